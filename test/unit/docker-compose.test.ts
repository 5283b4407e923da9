// Checks docker-compose.yml (the demo topology) against the real CLI and the
// files it builds from, so the demo cannot drift from what polymur accepts:
// flags and values as the relay parses them, destinations that name a service
// and a port it listens on, Dockerfiles and what they COPY, published ports.
// No Docker needed: it reads files only.
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import {
  envName,
  getAddress,
  parseArgv,
  type RawOptions,
  resolveOptions,
} from "../../common/options.ts";
import { parseDestinationList } from "../../dataplane/destination-spec.ts";
import {
  buildProcessOptions,
  buildRelayConfig,
  RELAY_OPTIONS,
} from "../../dataplane/relay-options.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const COMPOSE_FILE = path.join(ROOT, "docker-compose.yml");

// ---------------------------------------------------------------------------
// The compose model, as much of it as the demo uses.

interface Service {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  command?: string | string[];
  entrypoint?: string | string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  ports?: Array<
    string | number | { target: number; published?: string | number; protocol?: string }
  >;
  expose?: Array<string | number>;
  depends_on?: string[] | Record<string, unknown>;
  volumes?: Array<string | { type?: string; source?: string; target: string }>;
  healthcheck?: { test?: string | string[] };
}

interface Compose {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

interface Port {
  port: number;
  protocol: "tcp" | "udp";
}

/** A port a service listens on; plaintext = accepts Graphite plaintext lines. */
interface Listener extends Port {
  host: string;
  what: string;
  plaintext: boolean;
}

interface Dockerfile {
  path: string;
  context: string;
  /** Sources of COPY/ADD from the build context (not --from another stage). */
  copies: string[];
  expose: Port[];
  entrypoint: string;
}

const loadCompose = (text: string): Compose => parse(text, { merge: true }) as Compose;

function buildOf(svc: Service): { context: string; dockerfile: string } | null {
  if (svc.build === undefined) return null;
  const b = typeof svc.build === "string" ? { context: svc.build } : svc.build;
  const context = path.resolve(ROOT, b.context ?? ".");
  return { context, dockerfile: path.resolve(context, b.dockerfile ?? "Dockerfile") };
}

function readDockerfile(context: string, file: string): Dockerfile {
  const text = readFileSync(file, "utf8").replace(/\\\r?\n/g, " ");
  const df: Dockerfile = { path: file, context, copies: [], expose: [], entrypoint: "" };
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const [instr = "", ...rest] = line.split(/\s+/);
    const args = rest.join(" ");
    switch (instr.toUpperCase()) {
      case "COPY":
      case "ADD": {
        const words = args.startsWith("[")
          ? (JSON.parse(args) as string[])
          : args.split(/\s+/).filter((w) => w !== "");
        const flags = words.filter((w) => w.startsWith("--"));
        if (flags.some((f) => f.startsWith("--from"))) break;
        const paths = words.filter((w) => !w.startsWith("--"));
        df.copies.push(...paths.slice(0, -1));
        break;
      }
      case "EXPOSE":
        for (const w of args.split(/\s+/)) {
          const [port, protocol = "tcp"] = w.split("/");
          df.expose.push({ port: Number(port), protocol: protocol as "tcp" | "udp" });
        }
        break;
      case "ENTRYPOINT":
        df.entrypoint = args;
        break;
    }
  }
  return df;
}

/** Very small .dockerignore matcher: exact names/paths and `*` globs, no `!`. */
function dockerIgnored(context: string, source: string): string | undefined {
  const file = path.join(context, ".dockerignore");
  if (!existsSync(file)) return undefined;
  const rel = path.posix.normalize(source.replace(/^\.\//, ""));
  for (const raw of readFileSync(file, "utf8").split(/\r?\n/)) {
    const pattern = raw.trim().replace(/^\//, "").replace(/\/$/, "");
    if (pattern === "" || pattern.startsWith("#") || pattern.startsWith("!")) continue;
    const re = new RegExp(
      `^${pattern
        .split("*")
        .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
        .join("[^/]*")}(/|$)`,
    );
    if (rel !== "." && re.test(rel)) return pattern;
  }
  return undefined;
}

function args(v: string | string[] | undefined): string[] {
  if (v === undefined) return [];
  return typeof v === "string" ? v.split(/\s+/).filter((w) => w !== "") : v.map(String);
}

function environment(svc: Service): Record<string, string> {
  const env = svc.environment ?? {};
  if (Array.isArray(env)) {
    return Object.fromEntries(
      env.map((e) => {
        const eq = e.indexOf("=");
        return eq < 0 ? [e, ""] : [e.slice(0, eq), e.slice(eq + 1)];
      }),
    );
  }
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v === null ? "" : String(v)]));
}

/** Published ports: host side (if any) and container side, with protocol. */
function publishedPorts(
  svc: Service,
): Array<{ host: number | null; container: Port; text: string }> {
  return (svc.ports ?? []).map((p) => {
    if (typeof p === "object") {
      const protocol = (p.protocol ?? "tcp") as "tcp" | "udp";
      const host = p.published === undefined ? null : Number(p.published);
      return { host, container: { port: Number(p.target), protocol }, text: JSON.stringify(p) };
    }
    const text = String(p);
    const [spec = "", proto = "tcp"] = text.split("/");
    const parts = spec.split(":");
    const container = Number(parts.at(-1));
    const host = parts.length >= 2 ? Number(parts.at(-2)) : null;
    return { host, container: { port: container, protocol: proto as "tcp" | "udp" }, text };
  });
}

/**
 * A polymur service's options as `polymur relay` would see them (flag >
 * environment > default), without validating values, so that one bad value
 * does not hide the rest; null when the flags themselves do not parse.
 */
function rawOptions(svc: Service, argv: string[]): RawOptions | null {
  const role = argv[0] !== undefined && !argv[0].startsWith("-") ? 1 : 0;
  try {
    const { flags } = parseArgv(RELAY_OPTIONS, argv.slice(role));
    const env = environment(svc);
    return new Map(
      RELAY_OPTIONS.map((o) => [o.name, flags.get(o.name) ?? env[envName(o.name)] ?? o.default]),
    );
  } catch {
    return null;
  }
}

/** The roles cli/polymur.ts dispatches (`const ROLES = { relay: runRelay, ... }`). */
function polymurRoles(): string[] {
  const src = readFileSync(path.join(ROOT, "cli/polymur.ts"), "utf8");
  const m = /const ROLES\b[^{]*?\s=\s*\{([^}]*)\}/.exec(src);
  if (m === null) throw new Error("cannot find `const ROLES = {...}` in cli/polymur.ts");
  return [...m[1]!.matchAll(/([A-Za-z][\w-]*)\s*:/g)].map((x) => x[1]!);
}

/** carbon.conf's receivers: every *_PORT with its *_INTERFACE, in the [cache] section. */
function carbonListeners(conf: string): Array<Port & { iface: string; key: string }> {
  const text = readFileSync(conf, "utf8");
  const section = /\[cache\]([\s\S]*?)(?:^\[|$(?![\s\S]))/m.exec(text)?.[1] ?? "";
  const kv = new Map<string, string>();
  for (const line of section.split("\n")) {
    const m = /^\s*([A-Z_]+)\s*=\s*(.*?)\s*$/.exec(line);
    if (m) kv.set(m[1]!, m[2]!);
  }
  const out: Array<Port & { iface: string; key: string }> = [];
  for (const [key, value] of kv) {
    if (!key.endsWith("_RECEIVER_PORT") && key !== "CACHE_QUERY_PORT") continue;
    const prefix = key.slice(0, -"_PORT".length);
    if (key.startsWith("UDP_") && kv.get("ENABLE_UDP_LISTENER") !== "True") continue;
    out.push({
      key,
      port: Number(value),
      protocol: key.startsWith("UDP_") ? "udp" : "tcp",
      iface: kv.get(`${prefix}_INTERFACE`) ?? "0.0.0.0",
    });
  }
  return out;
}

const isLoopback = (host: string): boolean =>
  host === "localhost" || host === "::1" || host.startsWith("127.");

// ---------------------------------------------------------------------------
// Everything the checks need, derived from the compose text.

interface Model {
  compose: Compose;
  dockerfiles: Map<string, Dockerfile>;
  /** Services that run polymur, with their argv after the image's entrypoint. */
  polymur: Map<string, string[]>;
  /** Ports each service listens on, with the address (for polymur) where known. */
  listens: Map<string, Listener[]>;
}

function model(text: string): Model {
  const compose = loadCompose(text);
  const dockerfiles = new Map<string, Dockerfile>();
  const polymur = new Map<string, string[]>();
  const listens = new Map<string, Listener[]>();
  for (const [name, svc] of Object.entries(compose.services ?? {})) {
    const build = buildOf(svc);
    let df: Dockerfile | undefined;
    if (build !== null && existsSync(build.dockerfile)) {
      df = readDockerfile(build.context, build.dockerfile);
      dockerfiles.set(name, df);
    }
    const entry = args(svc.entrypoint).join(" ") || df?.entrypoint || "";
    const isPolymur = /\bpolymur(\.js)?\b/.test(entry) || /^polymur(:|$)/.test(svc.image ?? "");
    const ports: Listener[] = [];
    if (isPolymur) {
      const argv = args(svc.command);
      polymur.set(name, argv);
      const raw = rawOptions(svc, argv);
      const listeners: Array<[string, "tcp" | "udp"]> = [
        ["listen-addr", "tcp"],
        ["udp-addr", "udp"],
        ["stat-addr", "tcp"],
        ["api-addr", "tcp"],
      ];
      for (const [option, protocol] of listeners) {
        try {
          const addr = raw === null ? null : getAddress(raw, option);
          const plaintext = option === "listen-addr" || option === "udp-addr";
          if (addr !== null) ports.push({ ...addr, protocol, what: `--${option}`, plaintext });
        } catch {
          // Reported by the command-line checks.
        }
      }
    } else {
      const conf = build === null ? undefined : path.join(build.context, "carbon.conf");
      if (conf !== undefined && existsSync(conf)) {
        for (const l of carbonListeners(conf)) {
          ports.push({
            port: l.port,
            protocol: l.protocol,
            host: l.iface,
            what: `carbon.conf ${l.key}`,
            plaintext: l.key === "LINE_RECEIVER_PORT" || l.key === "UDP_RECEIVER_PORT",
          });
        }
      } else {
        // Anything else: what the compose file and the Dockerfile expose.
        for (const e of svc.expose ?? []) {
          const [port, protocol = "tcp"] = String(e).split("/");
          ports.push({
            port: Number(port),
            protocol: protocol as "tcp" | "udp",
            host: "0.0.0.0",
            what: "expose",
            plaintext: true, // unknown: any exposed port may be one
          });
        }
        for (const e of df?.expose ?? []) {
          ports.push({ ...e, host: "0.0.0.0", what: "Dockerfile EXPOSE", plaintext: true });
        }
      }
    }
    listens.set(name, ports);
  }
  return { compose, dockerfiles, polymur, listens };
}

/** Every problem found in the compose text; empty means it is consistent. */
function checkCompose(text: string): string[] {
  const problems: string[] = [];
  const bad = (msg: string): void => {
    problems.push(msg);
  };
  const m = model(text);
  const services = m.compose.services ?? {};
  const names = new Set(Object.keys(services));
  if (names.size === 0) bad("no services");
  if (m.polymur.size === 0)
    bad("no service runs polymur (image polymur* or an ENTRYPOINT running bin/polymur.js)");
  const roles = polymurRoles();
  const optionByName = new Map(RELAY_OPTIONS.map((o) => [o.name, o]));
  const envNames = new Map(RELAY_OPTIONS.map((o) => [envName(o.name), o.name]));

  const listensOn = (service: string, port: number, protocol: "tcp" | "udp" = "tcp") =>
    (m.listens.get(service) ?? []).find((l) => l.port === port && l.protocol === protocol);

  // Images and builds.
  for (const [name, svc] of Object.entries(services)) {
    const build = buildOf(svc);
    if (build === null) {
      if (svc.image === undefined) bad(`${name}: neither image nor build`);
      else if (
        !/:[\w][\w.-]*$/.test(svc.image.split("/").at(-1)!) ||
        svc.image.endsWith(":latest")
      ) {
        bad(`${name}: image "${svc.image}" has no pinned tag`);
      }
      continue;
    }
    if (!existsSync(build.context) || !statSync(build.context).isDirectory()) {
      bad(`${name}: build context ${path.relative(ROOT, build.context)} is not a directory`);
      continue;
    }
    const df = m.dockerfiles.get(name);
    if (df === undefined) {
      bad(`${name}: Dockerfile ${path.relative(ROOT, build.dockerfile)} does not exist`);
      continue;
    }
    for (const src of df.copies) {
      if (!existsSync(path.resolve(df.context, src))) {
        bad(
          `${name}: ${path.relative(ROOT, df.path)} copies "${src}", which is not in its build context`,
        );
      }
      const ignored = dockerIgnored(df.context, src);
      if (ignored !== undefined) {
        bad(
          `${name}: ${path.relative(ROOT, df.path)} copies "${src}", excluded by .dockerignore "${ignored}"`,
        );
      }
    }
  }

  // polymur commands: the role, then flags exactly as `polymur relay` parses them.
  for (const [name, argv] of m.polymur) {
    const svc = services[name]!;
    const first = argv[0];
    if (first !== undefined && !first.startsWith("-") && !roles.includes(first)) {
      bad(`${name}: polymur has no role "${first}" (roles: ${roles.join(", ")})`);
      continue;
    }
    const flagArgs = first !== undefined && !first.startsWith("-") ? argv.slice(1) : argv;
    for (let i = 0; i < flagArgs.length; i++) {
      const a = flagArgs[i]!;
      if (!a.startsWith("-")) {
        bad(`${name}: unexpected argument "${a}"`);
        continue;
      }
      const body = a.replace(/^--?/, "");
      const eq = body.indexOf("=");
      const flag = eq < 0 ? body : body.slice(0, eq);
      const spec = optionByName.get(flag) ?? optionByName.get(flag.replace(/^no-/, ""));
      if (spec === undefined) {
        bad(`${name}: unknown flag --${flag} (not in RELAY_OPTIONS)`);
        continue;
      }
      let value = eq < 0 ? undefined : body.slice(eq + 1);
      if (value === undefined && spec.type !== "bool") value = flagArgs[++i];
      if (spec.choices && value !== undefined && value !== "" && !spec.choices.includes(value)) {
        bad(`${name}: --${flag}=${value} is not one of ${spec.choices.join(", ")}`);
      }
    }
    const env = environment(svc);
    for (const key of Object.keys(env)) {
      if (key.startsWith("POLYMUR_") && !envNames.has(key)) {
        bad(`${name}: environment ${key} is not an option polymur reads`);
      }
    }
    // Destinations: a service of this file, on a port that service listens on.
    const destinations = rawOptions(svc, argv)?.get("destinations") ?? "";
    try {
      const list = parseDestinationList(destinations);
      if (list.length === 0) bad(`${name}: no --destinations`);
      for (const d of list) {
        if (!names.has(d.host)) {
          bad(`${name}: destination ${d.spec}: no service "${d.host}" in the compose file`);
        } else if (d.host === name) {
          bad(`${name}: destination ${d.spec} is this polymur itself`);
        } else {
          const l = listensOn(d.host, d.port);
          const known = (m.listens.get(d.host) ?? []).map((x) => x.port).join(", ") || "none";
          if (l === undefined) {
            bad(
              `${name}: destination ${d.spec}: ${d.host} does not listen on ${d.port} (listens on ${known})`,
            );
          } else if (!l.plaintext) {
            bad(
              `${name}: destination ${d.spec}: ${d.port} is ${d.host}'s ${l.what}, not plaintext`,
            );
          }
        }
      }
    } catch (err) {
      bad(`${name}: --destinations: ${(err as Error).message}`);
    }
    // The whole configuration, through the relay's own parser and builders.
    try {
      const { flags } = parseArgv(RELAY_OPTIONS, flagArgs);
      const raw = resolveOptions(RELAY_OPTIONS, flags, env, new Map());
      buildProcessOptions(raw);
      buildRelayConfig(raw);
    } catch (err) {
      bad(`${name}: polymur rejects its command line: ${(err as Error).message}`);
    }
  }

  // Published ports: one owner per host port, and something listening behind
  // each, on an address reachable from outside the container.
  const hostPorts = new Map<string, string>();
  for (const [name, svc] of Object.entries(services)) {
    for (const p of publishedPorts(svc)) {
      if (!Number.isInteger(p.container.port)) {
        bad(`${name}: cannot read port "${p.text}"`);
        continue;
      }
      if (p.host !== null) {
        const key = `${p.host}/${p.container.protocol}`;
        const owner = hostPorts.get(key);
        if (owner !== undefined) bad(`${name}: host port ${key} already published by ${owner}`);
        hostPorts.set(key, name);
      }
      const l = listensOn(name, p.container.port, p.container.protocol);
      if (l === undefined) {
        bad(
          `${name}: publishes ${p.text} but listens on no ${p.container.protocol} port ${p.container.port}`,
        );
      } else if (isLoopback(l.host)) {
        bad(`${name}: publishes ${p.text} but ${l.what} binds ${l.host}, unreachable from outside`);
      }
    }
    // A listener that other services reach must not be loopback-only.
    for (const l of m.listens.get(name) ?? []) {
      const expose = (svc.expose ?? []).map(String);
      if (expose.includes(String(l.port)) && isLoopback(l.host)) {
        bad(`${name}: exposes ${l.port} but ${l.what} binds ${l.host}`);
      }
    }
    // Services built with a carbon.conf: expose what carbon listens on.
    if (!m.polymur.has(name) && svc.expose !== undefined) {
      for (const e of svc.expose) {
        const [port, protocol = "tcp"] = String(e).split("/");
        if (!listensOn(name, Number(port), protocol as "tcp" | "udp")) {
          bad(`${name}: exposes ${e} but nothing in it listens there`);
        }
      }
    }
  }

  // nc in shell commands (the sender): a service, on a port it listens on.
  for (const [name, svc] of Object.entries(services)) {
    const script = args(svc.command).join(" ");
    for (const hit of script.matchAll(
      /\bnc\b((?:\s+-\w+(?:\s+\d+)?)*)\s+([A-Za-z0-9_.-]+)\s+(\d+)/g,
    )) {
      const host = hit[2]!;
      const port = Number(hit[3]);
      const udp = /-\w*u/.test(hit[1] ?? "");
      if (!names.has(host)) bad(`${name}: nc ${host} ${port}: no service "${host}"`);
      else {
        const l = listensOn(host, port, udp ? "udp" : "tcp");
        if (l === undefined) bad(`${name}: nc ${host} ${port}: ${host} does not listen on ${port}`);
        else if (!l.plaintext) bad(`${name}: nc ${host} ${port}: that is ${l.what}, not plaintext`);
      }
    }
  }

  // Compose interpolates $VAR in the file: shell variables must be written $$.
  for (const [name, svc] of Object.entries(services)) {
    const strings = [
      ...args(svc.command),
      ...args(svc.entrypoint),
      ...args(svc.healthcheck?.test),
      ...Object.values(environment(svc)),
    ];
    for (const s of strings) {
      const single = s.replace(/\$\$/g, "").match(/\$(?!\{[A-Z_][A-Z0-9_]*(:?[-?][^}]*)?\})./);
      if (single)
        bad(`${name}: "${single[0]}" would be interpolated by compose; write $$ for the shell`);
    }
  }

  // References: depends_on, named volumes.
  for (const [name, svc] of Object.entries(services)) {
    const deps = Array.isArray(svc.depends_on) ? svc.depends_on : Object.keys(svc.depends_on ?? {});
    for (const d of deps) if (!names.has(d)) bad(`${name}: depends_on unknown service "${d}"`);
    for (const v of svc.volumes ?? []) {
      const source = typeof v === "string" ? v.split(":")[0]! : (v.source ?? "");
      const named =
        source !== "" &&
        !source.startsWith(".") &&
        !source.startsWith("/") &&
        !source.startsWith("~");
      if (named && !(source in (m.compose.volumes ?? {}))) {
        bad(`${name}: volume "${source}" is not declared under volumes:`);
      }
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------

describe("docker-compose.yml", () => {
  const text = readFileSync(COMPOSE_FILE, "utf8");

  it("is consistent with polymur's CLI, its Dockerfiles and itself", () => {
    expect(checkCompose(text)).toEqual([]);
  });

  it("runs a relay broadcasting to two carbon-caches, and a sender", () => {
    const m = model(text);
    expect([...m.polymur.keys()]).toEqual(["polymur"]);
    const argv = m.polymur.get("polymur")!;
    expect(argv[0]).toBe("relay");
    const { flags } = parseArgv(RELAY_OPTIONS, argv.slice(1));
    const raw = resolveOptions(RELAY_OPTIONS, flags, {}, new Map());
    const config = buildRelayConfig(raw);
    expect(config.distribution).toBe("broadcast");
    const hosts = config.destinations.map((d) => d.host);
    expect(hosts).toHaveLength(2);
    for (const h of hosts) {
      expect(m.listens.get(h)?.some((l) => l.what.startsWith("carbon.conf"))).toBe(true);
    }
    expect(args(m.compose.services["sender"]?.command).join(" ")).toMatch(/\bnc polymur 2003\b/);
  });

  it("fails on what it should catch", () => {
    // Each mutation of the real file must produce a problem naming it.
    const mutations: Array<[string, string, RegExp]> = [
      ["--distribution=broadcast", "--distribution=hash", /--distribution=hash is not one of/],
      ["--workers=2", "--wokers=2", /unknown flag --wokers/],
      ["carbon-b:2003:b", "carbon-c:2003:b", /no service "carbon-c"/],
      ["carbon-b:2003:b", "carbon-b:2013:b", /carbon-b does not listen on 2013/],
      ["carbon-b:2003:b", "carbon-b:2004:b", /2004 is carbon-b's carbon.conf PICKLE_RECEIVER_PORT/],
      ["carbon-b:2003:b", "carbon-b", /polymur rejects its command line: invalid destination/],
      ["--stat-addr=0.0.0.0:2020", "--stat-addr=127.0.0.1:2020", /binds 127\.0\.0\.1, unreachable/],
      ['"2020:2020"', '"2003:2020"', /host port 2003\/tcp already published/],
      ["--api-addr=", "--api-addr=0.0.0.0:2030", /not a loopback address: set --api-token/],
      ["      - relay\n", "      - forwarder\n", /polymur has no role "forwarder"/],
      [
        "dockerfile: Dockerfile\n    image: polymur:dev",
        "dockerfile: Nope\n    image: polymur:dev",
        /Dockerfile Nope does not exist/,
      ],
      ["image: alpine:3.20", "image: alpine", /no pinned tag/],
      ["nc polymur 2003", "nc polymur 2004", /nc polymur 2004: polymur does not listen on 2004/],
      ["nc polymur 2003", "nc polymur 2020", /nc polymur 2020: that is --stat-addr/],
      ["$$i $$(date", "$i $$(date", /"\$i" would be interpolated/],
      ['    - "2003"\n    - "2004"', '    - "2103"\n    - "2004"', /exposes 2103 but nothing/],
    ];
    for (const [from, to, expected] of mutations) {
      expect(text.includes(from), `mutation source "${from}" is in the file`).toBe(true);
      const problems = checkCompose(text.replace(from, to));
      expect(problems.join("\n"), `${from} -> ${to}`).toMatch(expected);
    }
  });
});
