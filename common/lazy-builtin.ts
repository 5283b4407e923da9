import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

/**
 * A Node built-in module loaded on its first use rather than at start. Each
 * built-in a process loads costs it memory (its code pages and compiled
 * functions), and a relay without TLS, UDP or a disk queue uses none of
 * node:tls, node:dgram, node:dns and node:zlib: loaded when a destination
 * or listener needs them, one process with 5,000 idle connections measured
 * 90.7 MiB against 96.3. (Node itself still loads node:dgram and node:dns
 * for child_process and net.)
 * `T`: the module's type (`typeof import("node:tls")`).
 */
export function lazyBuiltin<T>(name: `node:${string}`): () => T {
  let loaded: T | undefined;
  return () => {
    loaded ??= require(name) as T;
    return loaded;
  };
}
