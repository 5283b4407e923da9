import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

/**
 * A Node built-in module loaded on its first use rather than at start. Each
 * built-in a process loads costs it memory (its code pages and compiled
 * functions: node:tls, node:dgram, node:dns and node:zlib together 4 MiB,
 * measured), and a relay that has no TLS, UDP or disk queue uses none of
 * those: it loads them only when a destination or listener needs them.
 * `T`: the module's type (`typeof import("node:tls")`).
 */
export function lazyBuiltin<T>(name: `node:${string}`): () => T {
  let loaded: T | undefined;
  return () => {
    loaded ??= require(name) as T;
    return loaded;
  };
}
