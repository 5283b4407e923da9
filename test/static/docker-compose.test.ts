// Checks docker-compose.yml (the demo topology) against the real CLI and the
// files it builds from, so the demo cannot drift from what polymur accepts:
// every polymur command line against its role's own option table and startup
// checks (relay, control, gateway, proxy), every polymurctl command line
// against polymurctl's commands and options, URLs (control plane, gateway)
// that name a service and a port where that role listens, destinations that
// name a service and a plaintext port, matching credentials, Dockerfiles and
// what they COPY, published ports. No Docker needed: it reads files only.
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { main as polymurctlMain, usage as polymurctlUsage } from "../../cli/polymurctl/main.ts";
import {
  envName,
  getAddress,
  type OptionSpec,
  parseArgv,
  type RawOptions,
  resolveOptions,
} from "../../common/options.ts";
import { buildControlOptions, CONTROL_OPTIONS } from "../../controlplane/control-options.ts";
import {
  parseDestination,
  parseDestinationList,
} from "../../dataplane/forward/destination-spec.ts";
import { buildGatewayOptions, GATEWAY_OPTIONS } from "../../dataplane/nodes/gateway-options.ts";
import { buildProxyOptions, PROXY_OPTIONS } from "../../dataplane/nodes/proxy-options.ts";
import {
  buildNodeOptions,
  buildRelayConfig,
  RELAY_OPTIONS,
} from "../../dataplane/nodes/relay-options.ts";

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
  depends_on?: string[] | Record<string, { condition?: string } | null>;
  volumes?: Array<string | { type?: string; source?: string; target: string }>;
  healthcheck?: { test?: string | string[]; disable?: boolean };
  restart?: string;
}

interface Compose {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

interface Port {
  port: number;
  protocol: "tcp" | "udp";
}

/**
 * What a listener serves: Graphite plaintext, HTTP stats, the line API, the
 * control plane, a gateway's proxy streams, something else, or (a port that
 * is only exposed, of an image we cannot read) anything.
 */
type ListenerKind = "plaintext" | "stats" | "line-api" | "control" | "gateway" | "other" | "any";

/** A port a service listens on. */
interface Listener extends Port {
  host: string;
  what: string;
  kind: ListenerKind;
  tls: boolean;
}

interface Dockerfile {
  path: string;
  context: string;
  /** Sources of COPY/ADD from the build context (not --from another stage). */
  copies: string[];
  expose: Port[];
  entrypoint: string;
  healthcheck: boolean;
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
  const df: Dockerfile = {
    path: file,
    context,
    copies: [],
    expose: [],
    entrypoint: "",
    healthcheck: false,
  };
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
      case "HEALTHCHECK":
        df.healthcheck = !/^NONE\b/i.test(args);
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

/**
 * Compose's interpolation, as if no variable were set: `${VAR:-default}` and
 * `${VAR-default}` are the default, `${VAR}` is empty, `$$` is `$`.
 */
function interpolate(s: string): string {
  return s
    .replace(/\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}/g, (_m, def: string | undefined) =>
      def === undefined ? "" : def,
    )
    .replace(/\$\$/g, "$");
}

/** The environment a service's processes see (after interpolation). */
function environment(svc: Service): Record<string, string> {
  const env = svc.environment ?? {};
  const pairs: Array<[string, string]> = Array.isArray(env)
    ? env.map((e) => {
        const eq = e.indexOf("=");
        return eq < 0 ? [e, ""] : [e.slice(0, eq), e.slice(eq + 1)];
      })
    : Object.entries(env).map(([k, v]) => [k, v === null ? "" : String(v)]);
  return Object.fromEntries(pairs.map(([k, v]) => [k, interpolate(v)]));
}

/** Published ports: host side (if any) and container side, with protocol. */
function publishedPorts(
  svc: Service,
): Array<{ host: number | null; hostIp: string; container: Port; text: string }> {
  return (svc.ports ?? []).map((p) => {
    if (typeof p === "object") {
      const protocol = (p.protocol ?? "tcp") as "tcp" | "udp";
      const host = p.published === undefined ? null : Number(p.published);
      const text = JSON.stringify(p);
      return { host, hostIp: "", container: { port: Number(p.target), protocol }, text };
    }
    const text = String(p);
    const [spec = "", proto = "tcp"] = text.split("/");
    const parts = spec.split(":");
    const container = Number(parts.at(-1));
    const host = parts.length >= 2 ? Number(parts.at(-2)) : null;
    const hostIp = parts.length >= 3 ? parts.slice(0, -2).join(":") : "";
    return { host, hostIp, container: { port: container, protocol: proto as "tcp" | "udp" }, text };
  });
}

/** Named volume mounts: source volume and the path it is mounted on. */
function mounts(svc: Service): Array<{ source: string; target: string }> {
  return (svc.volumes ?? []).map((v) =>
    typeof v === "string"
      ? { source: v.split(":")[0]!, target: v.split(":")[1] ?? "" }
      : { source: v.source ?? "", target: v.target },
  );
}

/** The named volume a path inside the service's container lives on, if any. */
function volumeAt(svc: Service, file: string): string | undefined {
  const hits = mounts(svc).filter(
    (m) => m.target !== "" && (file === m.target || file.startsWith(`${m.target}/`)),
  );
  hits.sort((a, b) => b.target.length - a.target.length);
  return hits[0]?.source;
}

function dependsOn(svc: Service): Map<string, string> {
  const d = svc.depends_on ?? {};
  if (Array.isArray(d)) return new Map(d.map((n) => [n, "service_started"]));
  return new Map(Object.entries(d).map(([n, v]) => [n, v?.condition ?? "service_started"]));
}

/** The roles cli/polymur/main.ts dispatches (`const ROLES = { relay: runRelay, ... }`). */
function polymurRoles(): string[] {
  const src = readFileSync(path.join(ROOT, "cli/polymur/main.ts"), "utf8");
  const m = /const ROLES\b[^{]*?\s=\s*\{([^}]*)\}/.exec(src);
  if (m === null) throw new Error("cannot find `const ROLES = {...}` in cli/polymur/main.ts");
  return [...m[1]!.matchAll(/([A-Za-z][\w-]*)\s*:/g)]
    .map((x) => x[1]!)
    .filter((r) => !NOT_SERVICES.has(r));
}

/** Roles that are no service of their own: `demo` starts the others on one machine. */
const NOT_SERVICES = new Set(["demo"]);

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
// polymur's roles: each one's option table, listeners and startup checks.

interface Role {
  /** The exported table's name, for messages. */
  table: string;
  options: readonly OptionSpec[];
  /** Options that are listen addresses, and what each serves. */
  listeners: Array<[option: string, protocol: "tcp" | "udp", kind: ListenerKind]>;
  /** The role's own startup validation of its resolved options (throws). */
  build(raw: RawOptions): unknown;
  /** Forwards to destinations (--destinations, or a control plane's). */
  forwards: boolean;
}

const ROLES: Record<string, Role> = {
  relay: {
    table: "RELAY_OPTIONS",
    options: RELAY_OPTIONS,
    listeners: [
      ["listen-addr", "tcp", "plaintext"],
      ["udp-addr", "udp", "plaintext"],
      ["stat-addr", "tcp", "stats"],
      ["api-addr", "tcp", "line-api"],
    ],
    build: (raw) => [buildNodeOptions(raw), buildRelayConfig(raw)],
    forwards: true,
  },
  control: {
    table: "CONTROL_OPTIONS",
    options: CONTROL_OPTIONS,
    listeners: [["listen-addr", "tcp", "control"]],
    build: buildControlOptions,
    forwards: false,
  },
  gateway: {
    table: "GATEWAY_OPTIONS",
    options: GATEWAY_OPTIONS,
    listeners: [
      ["listen-addr", "tcp", "gateway"],
      ["stat-addr", "tcp", "stats"],
    ],
    build: buildGatewayOptions,
    forwards: true,
  },
  proxy: {
    table: "PROXY_OPTIONS",
    options: PROXY_OPTIONS,
    listeners: [
      ["listen-addr", "tcp", "plaintext"],
      ["udp-addr", "udp", "plaintext"],
      ["stat-addr", "tcp", "stats"],
    ],
    build: buildProxyOptions,
    forwards: false,
  },
};

/** Options naming files the role reads at startup: they exist only in the container. */
const FILE_OPTIONS = new Set(["tls-cert", "tls-key", "control-ca", "ca"]);

/** A value the test cannot know: written into a config file by another service. */
const WRITTEN_AT_RUNTIME = "written-at-runtime";

/**
 * A polymur process's options as its role would see them (flag > environment
 * > config file > default), without validating values, so that one bad value
 * does not hide the rest. Flags the role does not have are left out (they are
 * reported by the command-line checks).
 */
function resolveRaw(
  role: Role,
  flagArgs: string[],
  env: Record<string, string>,
  file: RawOptions,
): RawOptions {
  const known = new Set(role.options.map((o) => o.name));
  const argv = flagArgs.filter((a) => {
    if (!a.startsWith("-")) return true;
    const name = a.replace(/^--?/, "").split("=")[0]!;
    return known.has(name) || known.has(name.replace(/^no-/, ""));
  });
  let flags: RawOptions = new Map();
  try {
    flags = parseArgv(role.options, argv).flags;
  } catch {
    // Reported by the command-line checks.
  }
  return new Map(
    role.options.map((o) => [
      o.name,
      flags.get(o.name) ?? env[envName(o.name)] ?? file.get(o.name) ?? o.default,
    ]),
  );
}

// ---------------------------------------------------------------------------
// polymurctl: its commands, read from its own --help (the real dispatcher).

interface CtlCommand {
  usage: string;
  /** `polymurctl dest add|rm|ls`: the words after the command in its usage lines. */
  subcommands: string[];
  /** Every --flag in its help, and whether it takes a value. */
  flags: Map<string, boolean>;
  /** POLYMUR_* variables it reads. */
  env: Set<string>;
  defaultServer: string;
}

async function loadPolymurctl(): Promise<Map<string, CtlCommand>> {
  const names = [...polymurctlUsage().matchAll(/^ {2}([a-z][\w-]*) {2,}/gm)].map((m) => m[1]!);
  const out = new Map<string, CtlCommand>();
  for (const name of names) {
    let stdout = "";
    const sink = (write: (s: string) => void) =>
      new Writable({
        write(chunk, _enc, cb) {
          write(String(chunk));
          cb();
        },
      });
    const code = await polymurctlMain([name, "--help"], {
      stdin: process.stdin,
      stdout: sink((s) => {
        stdout += s;
      }),
      stderr: sink(() => {}),
    });
    if (code !== 0) throw new Error(`polymurctl ${name} --help exited ${code}`);
    const flags = new Map<string, boolean>([["help", false]]);
    for (const m of stdout.matchAll(
      /--([a-z][\w-]*)(?:[ =]([A-Z][A-Z_]*\b|[\w.-]+(?:\|[\w.-]+)+))?/g,
    )) {
      flags.set(m[1]!, (flags.get(m[1]!) ?? false) || m[2] !== undefined);
    }
    out.set(name, {
      usage: stdout,
      subcommands: [
        ...new Set(
          [...stdout.matchAll(new RegExp(`polymurctl ${name} ([a-z][\\w-]*)`, "g"))].map(
            (m) => m[1]!,
          ),
        ),
      ],
      flags,
      env: new Set(stdout.match(/\bPOLYMUR_[A-Z_]+\b/g) ?? []),
      defaultServer: /default (https?:\/\/[^\s)]+)/.exec(stdout)?.[1] ?? "",
    });
  }
  return out;
}

const POLYMURCTL = await loadPolymurctl();

/** One polymurctl command line in the compose file. */
interface CtlCall {
  service: string;
  argv: string[];
  command: string;
  subcommand: string | undefined;
  /** Positional arguments after the subcommand. */
  operands: string[];
  flags: Map<string, string>;
  unknownFlags: string[];
  server: string;
  token: string;
}

function parseCtlCall(service: string, argv: string[], env: Record<string, string>): CtlCall {
  const [command = "", ...rest] = argv;
  const spec = POLYMURCTL.get(command);
  const flags = new Map<string, string>();
  const unknownFlags: string[] = [];
  const positionals: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (!a.startsWith("-") || a === "-") {
      positionals.push(a);
      continue;
    }
    const body = a.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = body === "h" ? "help" : eq < 0 ? body : body.slice(0, eq);
    const takesValue = spec?.flags.get(name);
    if (takesValue === undefined) {
      unknownFlags.push(name);
      continue;
    }
    let value = eq < 0 ? undefined : body.slice(eq + 1);
    if (value === undefined) value = takesValue ? (rest[++i] ?? "") : "true";
    flags.set(name, value);
  }
  const hasSubs = (spec?.subcommands.length ?? 0) > 0;
  return {
    service,
    argv,
    command,
    subcommand: hasSubs ? positionals[0] : undefined,
    operands: hasSubs ? positionals.slice(1) : positionals,
    flags,
    unknownFlags,
    server: flags.get("server") ?? (env["POLYMUR_SERVER"] || spec?.defaultServer || ""),
    token: flags.get("token") ?? env["POLYMUR_ADMIN_TOKEN"] ?? "",
  };
}

/** polymurctl command lines in a shell script or a CMD: up to a shell operator. */
function polymurctlIn(text: string): string[][] {
  return [
    ...text.matchAll(/(?:^|[\s;|&(`])(?:\S*\/)?polymurctl(?:\.js)?((?:[ \t]+[^\s;|&)<>`]+)*)/gm),
  ].map((m) =>
    m[1]!
      .trim()
      .split(/[ \t]+/)
      .filter((w) => w !== "")
      .map((w) => interpolate(w.replace(/^(['"])(.*)\1$/, "$2"))),
  );
}

// ---------------------------------------------------------------------------
// Everything the checks need, derived from the compose text.

interface PolymurProcess {
  role: string;
  /** argv after the image's entrypoint, role first (interpolated). */
  argv: string[];
  /** The flags after the role. */
  flagArgs: string[];
  raw: RawOptions;
  /** Options set in its --config file by another service, if any. */
  file: RawOptions;
}

interface Model {
  compose: Compose;
  dockerfiles: Map<string, Dockerfile>;
  /** Services whose main process is polymur, by service. */
  polymur: Map<string, PolymurProcess>;
  /** Every polymurctl command line (entrypoint, scripts, health checks). */
  ctl: CtlCall[];
  /** Shell text of each service's command and entrypoint (scripts), raw. */
  scripts: Map<string, string>;
  /** Ports each service listens on. */
  listens: Map<string, Listener[]>;
}

/** Lines of other services' scripts that write `file`, and who writes them. */
function writersOf(
  scripts: Map<string, string>,
  self: string,
  file: string,
): Array<{ service: string; line: string }> {
  const out: Array<{ service: string; line: string }> = [];
  for (const [service, script] of scripts) {
    if (service === self) continue;
    for (const line of script.split("\n")) if (line.includes(file)) out.push({ service, line });
  }
  return out;
}

/** `name = value` settings a shell line writes (printf/echo into a config file). */
const settingsIn = (line: string): string[] =>
  [...line.matchAll(/(?:^|[\s'"])([a-z][a-z0-9-]*) = /g)].map((m) => m[1]!);

function model(text: string): Model {
  const compose = loadCompose(text);
  const services = compose.services ?? {};
  const dockerfiles = new Map<string, Dockerfile>();
  const scripts = new Map<string, string>();
  const kinds = new Map<string, "polymur" | "polymurctl" | "other">();
  for (const [name, svc] of Object.entries(services)) {
    const build = buildOf(svc);
    let df: Dockerfile | undefined;
    if (build !== null && existsSync(build.dockerfile)) {
      df = readDockerfile(build.context, build.dockerfile);
      dockerfiles.set(name, df);
    }
    const entry = args(svc.entrypoint).join(" ") || df?.entrypoint || "";
    if (svc.entrypoint !== undefined) {
      kinds.set(
        name,
        /\bpolymurctl(\.js)?\b/.test(entry)
          ? "polymurctl"
          : /\bpolymur(\.js)?\b/.test(entry)
            ? "polymur"
            : "other",
      );
    } else {
      const isPolymur = /\bpolymur(\.js)?\b/.test(entry) || /^polymur(:|$)/.test(svc.image ?? "");
      kinds.set(name, isPolymur ? "polymur" : "other");
    }
    if (kinds.get(name) === "other") {
      scripts.set(name, [...args(svc.entrypoint), ...args(svc.command)].join("\n"));
    }
  }

  const polymur = new Map<string, PolymurProcess>();
  const ctl: CtlCall[] = [];
  const listens = new Map<string, Listener[]>();
  for (const [name, svc] of Object.entries(services)) {
    const env = environment(svc);
    const kind = kinds.get(name);
    if (kind === "polymurctl") {
      ctl.push(parseCtlCall(name, args(svc.command).map(interpolate), env));
    }
    for (const argv of polymurctlIn(scripts.get(name) ?? "")) {
      ctl.push(parseCtlCall(name, argv, env));
    }
    const health = svc.healthcheck?.test;
    if (health !== undefined) {
      for (const argv of polymurctlIn(args(health).join(" "))) {
        ctl.push(parseCtlCall(name, argv, env));
      }
    }

    const ports: Listener[] = [];
    if (kind === "polymur") {
      const argv = args(svc.command).map(interpolate);
      const hasRole = argv[0] !== undefined && !argv[0].startsWith("-");
      const roleName = hasRole ? argv[0]! : "relay";
      const flagArgs = hasRole ? argv.slice(1) : argv;
      const role = ROLES[roleName];
      const file: RawOptions = new Map();
      if (role !== undefined) {
        // Settings another service writes into its --config file.
        const config = resolveRaw(role, flagArgs, env, new Map()).get("config") ?? "";
        if (config !== "") {
          for (const w of writersOf(scripts, name, config)) {
            for (const setting of settingsIn(w.line)) file.set(setting, WRITTEN_AT_RUNTIME);
          }
        }
      }
      const raw = role === undefined ? new Map() : resolveRaw(role, flagArgs, env, file);
      polymur.set(name, { role: roleName, argv, flagArgs, raw, file });
      const tls = (raw.get("tls-cert") ?? "") !== "";
      for (const [option, protocol, what] of role?.listeners ?? []) {
        try {
          const addr = getAddress(raw, option);
          if (addr !== null) {
            ports.push({
              ...addr,
              protocol,
              what: `--${option}`,
              kind: what,
              tls: tls && (what === "control" || what === "gateway"),
            });
          }
        } catch {
          // Reported by the command-line checks.
        }
      }
    } else {
      const build = buildOf(svc);
      const conf = build === null ? undefined : path.join(build.context, "carbon.conf");
      if (conf !== undefined && existsSync(conf)) {
        for (const l of carbonListeners(conf)) {
          const plaintext = l.key === "LINE_RECEIVER_PORT" || l.key === "UDP_RECEIVER_PORT";
          ports.push({
            port: l.port,
            protocol: l.protocol,
            host: l.iface,
            what: `carbon.conf ${l.key}`,
            kind: plaintext ? "plaintext" : "other",
            tls: false,
          });
        }
      } else {
        // Anything else: what the compose file and the Dockerfile expose.
        const df = dockerfiles.get(name);
        for (const e of svc.expose ?? []) {
          const [port, protocol = "tcp"] = String(e).split("/");
          ports.push({
            port: Number(port),
            protocol: protocol as "tcp" | "udp",
            host: "0.0.0.0",
            what: "expose",
            kind: "any", // unknown: any exposed port may be one
            tls: false,
          });
        }
        for (const e of df?.expose ?? []) {
          ports.push({ ...e, host: "0.0.0.0", what: "Dockerfile EXPOSE", kind: "any", tls: false });
        }
      }
    }
    listens.set(name, ports);
  }
  return { compose, dockerfiles, polymur, ctl, scripts, listens };
}

const KIND_NAMES: Record<ListenerKind, string> = {
  plaintext: "Graphite plaintext",
  stats: "stats endpoint",
  "line-api": "line API",
  control: "control plane",
  gateway: "gateway",
  other: "other",
  any: "any",
};

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
  for (const r of roles) {
    if (ROLES[r] === undefined) bad(`polymur role "${r}" has no option table in this test`);
  }

  const listensOn = (service: string, port: number, protocol: "tcp" | "udp" = "tcp") =>
    (m.listens.get(service) ?? []).find((l) => l.port === port && l.protocol === protocol);
  const portsOf = (service: string) =>
    (m.listens.get(service) ?? []).map((x) => x.port).join(", ") || "none";

  /** A destination: a service of this file, on a plaintext port it listens on. */
  const checkDestination = (from: string, what: string, spec: string, self?: string): void => {
    let d: ReturnType<typeof parseDestination>;
    try {
      d = parseDestination(spec);
    } catch (err) {
      bad(`${from}: ${what}: ${(err as Error).message}`);
      return;
    }
    if (!names.has(d.host)) {
      bad(`${from}: ${what}: destination ${d.spec}: no service "${d.host}" in the compose file`);
    } else if (d.host === self) {
      bad(`${from}: ${what}: destination ${d.spec} is this polymur itself`);
    } else {
      const l = listensOn(d.host, d.port);
      if (l === undefined) {
        bad(
          `${from}: ${what}: destination ${d.spec}: ${d.host} does not listen on ${d.port} (listens on ${portsOf(d.host)})`,
        );
      } else if (l.kind !== "plaintext" && l.kind !== "any") {
        bad(
          `${from}: ${what}: destination ${d.spec}: ${d.port} is ${d.host}'s ${l.what}, not plaintext`,
        );
      }
    }
  };

  /**
   * A URL one service uses to reach another's control plane or gateway: the
   * service it names (loopback: itself), listening there as that role, with
   * TLS exactly when the scheme is https. Returns the service, if it is one.
   */
  const checkUrl = (
    from: string,
    what: string,
    url: string,
    kind: ListenerKind,
  ): string | undefined => {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      bad(`${from}: ${what} "${url}" is not a URL`);
      return undefined;
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      bad(`${from}: ${what} ${url}: not http:// or https://`);
      return undefined;
    }
    const host = u.hostname.replace(/^\[|\]$/g, "");
    const target = isLoopback(host) ? from : host;
    const port = u.port === "" ? (u.protocol === "https:" ? 443 : 80) : Number(u.port);
    if (!names.has(target)) {
      bad(`${from}: ${what} ${url}: no service "${host}" in the compose file`);
      return undefined;
    }
    const l = listensOn(target, port);
    if (l === undefined) {
      bad(
        `${from}: ${what} ${url}: ${target} does not listen on ${port} (listens on ${portsOf(target)})`,
      );
      return undefined;
    }
    if (l.kind !== kind && l.kind !== "any") {
      bad(
        `${from}: ${what} ${url}: ${port} is ${target}'s ${l.what} (${KIND_NAMES[l.kind]}), not a ${KIND_NAMES[kind]}`,
      );
      return undefined;
    }
    if (l.tls !== (u.protocol === "https:")) {
      bad(
        `${from}: ${what} ${url}: ${target} serves ${l.tls ? "TLS (https://)" : "cleartext HTTP/2 (http://)"} on ${port}`,
      );
    }
    return target;
  };

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

  // polymurctl command lines: the command and subcommand exist, every flag is
  // one it takes, its control plane is a service of this file with the same
  // admin credential, and what it adds makes sense.
  const ctlEnv = new Set([...POLYMURCTL.values()].flatMap((c) => [...c.env]));
  /** What the polymurctl lines give each control plane: destinations by scope, keys. */
  const fleet = new Map<string, { destinations: Map<string, string[]>; keys: string[] }>();
  for (const call of m.ctl) {
    const spec = POLYMURCTL.get(call.command);
    if (spec === undefined) {
      bad(
        `${call.service}: polymurctl has no command "${call.command}" (commands: ${[...POLYMURCTL.keys()].join(", ")})`,
      );
      continue;
    }
    const where = `${call.service}: polymurctl ${call.command}`;
    for (const f of call.unknownFlags) bad(`${where}: unknown flag --${f}`);
    if (spec.subcommands.length > 0 && !spec.subcommands.includes(call.subcommand ?? "")) {
      bad(`${where}: no subcommand "${call.subcommand ?? ""}" (${spec.subcommands.join(", ")})`);
      continue;
    }
    if (call.command === "hash") continue; // offline: no control plane
    const cmdline = `polymurctl ${call.command}${call.subcommand === undefined ? "" : ` ${call.subcommand}`}`;
    const full = `${call.service}: ${cmdline}`;
    const control = checkUrl(call.service, `${cmdline} --server`, call.server, "control");
    const cp = control === undefined ? undefined : m.polymur.get(control);
    if (cp === undefined) continue;
    if (call.token === "") {
      if (call.command !== "status") {
        bad(`${full}: no admin credential (POLYMUR_ADMIN_TOKEN or --token)`);
      }
    } else if (call.token !== (cp.raw.get("admin-token") ?? "")) {
      bad(`${full}: its admin credential (POLYMUR_ADMIN_TOKEN) is not ${control}'s`);
    }
    const f = fleet.get(control!) ?? {
      destinations: new Map<string, string[]>(),
      keys: [] as string[],
    };
    fleet.set(control!, f);
    const scope = call.flags.has("all") ? "*" : (call.flags.get("group") ?? "");
    if (call.command === "dest" && call.subcommand === "add") {
      if (scope === "") bad(`${full}: needs --all or --group NAME`);
      if (call.operands.length === 0) bad(`${full}: no destination`);
      for (const d of call.operands) checkDestination(call.service, `${cmdline} ${d}`, d);
      f.destinations.set(scope, [...(f.destinations.get(scope) ?? []), ...call.operands]);
    }
    if (call.command === "key" && (call.subcommand === "create" || call.subcommand === "rotate")) {
      if (call.operands.length !== 1) bad(`${full}: takes one key name`);
      else f.keys.push(call.operands[0]!);
    }
  }

  // polymur commands: the role, then flags exactly as that role parses them.
  for (const [name, proc] of m.polymur) {
    const svc = services[name]!;
    const env = environment(svc);
    const role = ROLES[proc.role];
    if (role === undefined) {
      bad(`${name}: polymur has no role "${proc.role}" (roles: ${roles.join(", ")})`);
      continue;
    }
    const optionByName = new Map(role.options.map((o) => [o.name, o]));
    const flagArgs = proc.flagArgs;
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
        bad(`${name}: unknown flag --${flag} (not in ${role.table}, polymur ${proc.role})`);
        continue;
      }
      let value = eq < 0 ? undefined : body.slice(eq + 1);
      if (value === undefined && spec.type !== "bool") value = flagArgs[++i];
      if (spec.choices && value !== undefined && value !== "" && !spec.choices.includes(value)) {
        bad(`${name}: --${flag}=${value} is not one of ${spec.choices.join(", ")}`);
      }
    }
    const envNames = new Set(role.options.map((o) => envName(o.name)));
    const readsCtl = m.ctl.some((c) => c.service === name);
    for (const key of Object.keys(env)) {
      if (key.startsWith("POLYMUR_") && !envNames.has(key) && !(readsCtl && ctlEnv.has(key))) {
        bad(`${name}: environment ${key} is not an option polymur ${proc.role} reads`);
      }
    }

    // Its --config file, when another service writes it: only options of this
    // role, on a volume both mount, written before this service starts.
    const config = proc.raw.get("config") ?? "";
    if (config !== "") {
      const writers = writersOf(m.scripts, name, config);
      if (writers.length === 0) {
        if (!existsSync(path.resolve(ROOT, config))) {
          bad(`${name}: --config ${config}: no service in this file writes it`);
        }
      }
      for (const w of writers) {
        for (const setting of settingsIn(w.line)) {
          if (!optionByName.has(setting)) {
            bad(
              `${name}: ${w.service} writes "${setting} = …" into ${config}, not an option of polymur ${proc.role}`,
            );
          }
        }
      }
      for (const writer of new Set(writers.map((w) => w.service))) {
        const mine = volumeAt(svc, config);
        const theirs = volumeAt(services[writer]!, config);
        if (mine === undefined || mine !== theirs) {
          bad(`${name}: --config ${config} is not on a volume it shares with ${writer}`);
        }
        if (dependsOn(svc).get(writer) !== "service_completed_successfully") {
          bad(
            `${name}: must start after ${writer} writes its --config (depends_on condition: service_completed_successfully)`,
          );
        }
      }
    }

    // Where it takes destinations from: --destinations, or a control plane of
    // this file that some polymurctl line gives destinations for its group.
    const managedBy = proc.raw.get("control-plane") ?? "";
    if (role.forwards && managedBy === "") {
      try {
        const list = parseDestinationList(proc.raw.get("destinations") ?? "");
        if (list.length === 0) bad(`${name}: no --destinations and no --control-plane`);
        for (const d of list) checkDestination(name, "--destinations", d.spec, name);
      } catch (err) {
        bad(`${name}: --destinations: ${(err as Error).message}`);
      }
    }
    if (managedBy !== "") {
      const control = checkUrl(name, "--control-plane", managedBy, "control");
      const cp = control === undefined ? undefined : m.polymur.get(control);
      if (cp !== undefined) {
        const nodeToken = cp.raw.get("node-token") ?? "";
        if (nodeToken === "") {
          bad(
            `${name}: ${control} has no --node-token (POLYMUR_NODE_TOKEN): it refuses every node`,
          );
        } else if ((proc.raw.get("node-token") ?? "") !== nodeToken) {
          bad(`${name}: its node credential (POLYMUR_NODE_TOKEN) is not ${control}'s`);
        }
        const group = proc.raw.get("group") ?? "";
        const f = fleet.get(control!);
        const given = [...(f?.destinations.get("*") ?? []), ...(f?.destinations.get(group) ?? [])];
        if (given.length === 0) {
          bad(
            `${name}: managed by ${control} (group ${group}), but no \`polymurctl dest add\` in this file gives it destinations`,
          );
        }
        if (proc.role === "gateway" && (f?.keys.length ?? 0) === 0) {
          bad(
            `${name}: managed by ${control}, but no \`polymurctl key create\` in this file gives it an API key`,
          );
        }
      }
    }
    if (proc.role === "proxy") {
      for (const g of (proc.raw.get("gateway") ?? "").split(",")) {
        if (g.trim() !== "") checkUrl(name, "--gateway", g.trim(), "gateway");
      }
    }

    // The whole configuration, through the role's own parser and startup checks.
    try {
      const { flags } = parseArgv(role.options, flagArgs);
      const raw = resolveOptions(role.options, flags, env, proc.file);
      try {
        role.build(raw);
      } catch (err) {
        const msg = (err as Error).message;
        // Files named by options exist only inside the container.
        const fileOption = /^--([\w-]+) /.exec(msg)?.[1];
        if (fileOption === undefined || !FILE_OPTIONS.has(fileOption) || !/ENOENT/.test(msg)) {
          throw err;
        }
      }
    } catch (err) {
      bad(`${name}: polymur ${proc.role} rejects its command line: ${(err as Error).message}`);
    }
  }

  // polymur started from a script would escape every check above.
  for (const [name, script] of m.scripts) {
    const hit = /(?:^|[\s;|&(`])(?:\S*\/)?polymur(?:\.js)?[ \t]+([a-z][\w-]*|-)/m.exec(script);
    if (hit !== null) {
      bad(
        `${name}: runs polymur from a shell script, where this test cannot check its options: make it the service's command`,
      );
    }
  }

  // Other services' POLYMUR_* variables: only those polymurctl reads.
  for (const [name, svc] of Object.entries(services)) {
    if (m.polymur.has(name)) continue;
    for (const key of Object.keys(environment(svc))) {
      if (key.startsWith("POLYMUR_") && !ctlEnv.has(key)) {
        bad(`${name}: environment ${key} is not one polymurctl reads`);
      }
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
      } else if (l.what === "--stat-addr" && p.hostIp !== "127.0.0.1") {
        // /debug/rejects shows sender addresses and line text.
        bad(
          `${name}: publishes the stats endpoint (${p.text}) on every host interface; publish it on 127.0.0.1`,
        );
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

  // nc in shell commands (the senders): a service, on a plaintext port it listens on.
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
        else if (l.kind !== "plaintext" && l.kind !== "any")
          bad(`${name}: nc ${host} ${port}: that is ${l.what}, not plaintext`);
      }
    }
  }

  // Health checks that fetch the service's own HTTP endpoint: its stats port.
  for (const [name, svc] of Object.entries(services)) {
    const test = args(svc.healthcheck?.test).join(" ");
    for (const hit of test.matchAll(
      /https?:\/\/(?:127\.0\.0\.1|localhost):(\d+)\/(readyz|healthz|metrics|stats)\b/g,
    )) {
      const l = listensOn(name, Number(hit[1]));
      if (l === undefined || (l.kind !== "stats" && l.kind !== "any")) {
        bad(
          `${name}: health check fetches /${hit[2]} on ${hit[1]}, which is not its stats endpoint (${l?.what ?? "nothing listens there"})`,
        );
      }
    }
  }

  // Compose interpolates $VAR in the file: shell variables must be written $$.
  for (const [name, svc] of Object.entries(services)) {
    const strings = [
      ...args(svc.command),
      ...args(svc.entrypoint),
      ...args(svc.healthcheck?.test),
      ...Object.entries(svc.environment ?? {}).map(([, v]) => String(v)),
    ];
    for (const s of strings) {
      const single = s.replace(/\$\$/g, "").match(/\$(?!\{[A-Z_][A-Z0-9_]*(:?[-?][^}]*)?\})./);
      if (single)
        bad(`${name}: "${single[0]}" would be interpolated by compose; write $$ for the shell`);
    }
  }

  // References: depends_on (and what its condition needs), named volumes.
  for (const [name, svc] of Object.entries(services)) {
    for (const [d, condition] of dependsOn(svc)) {
      const target = services[d];
      if (target === undefined) {
        bad(`${name}: depends_on unknown service "${d}"`);
        continue;
      }
      if (condition === "service_healthy") {
        const own = target.healthcheck !== undefined && target.healthcheck.disable !== true;
        if (!own && !m.dockerfiles.get(d)?.healthcheck) {
          bad(`${name}: waits for ${d} to be healthy, but ${d} has no health check`);
        }
      }
      if (
        condition === "service_completed_successfully" &&
        (target.restart === "always" || target.restart === "unless-stopped")
      ) {
        bad(`${name}: waits for ${d} to complete, but ${d} restarts (restart: ${target.restart})`);
      }
    }
    for (const v of mounts(svc)) {
      const source = v.source;
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
  return [...new Set(problems)];
}

// ---------------------------------------------------------------------------

describe("docker-compose.yml", () => {
  const text = readFileSync(COMPOSE_FILE, "utf8");

  it("is consistent with polymur's CLI, polymurctl, its Dockerfiles and itself", () => {
    expect(checkCompose(text)).toEqual([]);
  });

  it("has an option table in this test for every polymur role", () => {
    expect(Object.keys(ROLES).sort()).toEqual(polymurRoles().sort());
  });

  it("runs the demo topology: control plane, managed relay and gateway, proxy, two caches, senders", () => {
    const m = model(text);
    const roleOf = Object.fromEntries([...m.polymur].map(([s, p]) => [s, p.role]));
    expect(roleOf).toEqual({
      control: "control",
      relay: "relay",
      gateway: "gateway",
      proxy: "proxy",
    });
    const raw = (s: string) => m.polymur.get(s)!.raw;
    // The relay and the gateway are managed by the control plane.
    for (const node of ["relay", "gateway"]) {
      expect(new URL(raw(node).get("control-plane")!).hostname).toBe("control");
      expect(raw(node).get("destinations")).toBe("");
    }
    expect(raw("relay").get("group")).toBe("site-central");
    expect(raw("gateway").get("key-prefix")).toBe("true");
    // The proxy streams to the gateway.
    expect(new URL(raw("proxy").get("gateway")!).hostname).toBe("gateway");
    // setup gives every node both caches and creates the proxy's key.
    const adds = m.ctl.filter((c) => c.command === "dest" && c.subcommand === "add");
    expect(adds.map((c) => c.service)).toEqual(["setup"]);
    expect(adds[0]!.flags.has("all")).toBe(true);
    const hosts = adds.flatMap((c) => c.operands).map((d) => parseDestination(d).host);
    expect(hosts).toHaveLength(2);
    for (const h of hosts) {
      expect(m.listens.get(h)?.some((l) => l.what.startsWith("carbon.conf"))).toBe(true);
    }
    expect(
      m.ctl.some(
        (c) => c.command === "key" && c.subcommand === "create" && c.operands[0] === "site-remote",
      ),
    ).toBe(true);
    // One sender into the relay, one into the proxy.
    expect(args(m.compose.services["sender"]?.command).join(" ")).toMatch(/\bnc relay 2003\b/);
    expect(args(m.compose.services["remote-sender"]?.command).join(" ")).toMatch(
      /\bnc proxy 2003\b/,
    );
  });

  it("fails on what it should catch", () => {
    // Each mutation of the real file must produce a problem naming it.
    const mutations: Array<[string, string, RegExp]> = [
      // Flags and values, per role.
      ["--compression=zstd", "--compression=lz4", /--compression=lz4 is not one of/],
      ["--workers=2", "--wokers=2", /relay: unknown flag --wokers \(not in RELAY_OPTIONS/],
      [
        "- --key-prefix\n",
        "- --key-prefixes\n",
        /gateway: unknown flag --key-prefixes \(not in GATEWAY_OPTIONS/,
      ],
      ["- --key-prefix\n", "- --udp-addr=0.0.0.0:2003\n", /gateway: unknown flag --udp-addr/],
      [
        "--state-dir=/var/lib/polymur/control",
        "--state-directory=/var/lib/polymur/control",
        /control: unknown flag --state-directory \(not in CONTROL_OPTIONS/,
      ],
      ["--spool-dir=", "--spool=", /proxy: unknown flag --spool \(not in PROXY_OPTIONS/],
      ["      - relay\n", "      - forwarder\n", /polymur has no role "forwarder"/],
      // Destinations, now given by polymurctl.
      ["carbon-b:2003:b", "carbon-c:2003:b", /no service "carbon-c"/],
      ["carbon-b:2003:b", "carbon-b:2013:b", /carbon-b does not listen on 2013/],
      ["carbon-b:2003:b", "carbon-b:2004:b", /2004 is carbon-b's carbon.conf PICKLE_RECEIVER_PORT/],
      ["carbon-b:2003:b", "carbon-b", /setup: polymurctl dest add carbon-b: invalid destination/],
      ["--all\n        fi", "\n        fi", /dest add: needs --all or --group/],
      // URLs between the roles.
      [
        "--control-plane=http://control:7000",
        "--control-plane=http://control:7001",
        /relay: --control-plane http:\/\/control:7001: control does not listen on 7001/,
      ],
      [
        "--control-plane=http://control:7000",
        "--control-plane=http://gateway:8443",
        /relay: --control-plane http:\/\/gateway:8443: 8443 is gateway's --listen-addr \(gateway\), not a control plane/,
      ],
      [
        "--control-plane=http://control:7000",
        "--control-plane=https://control:7000",
        /control serves cleartext HTTP\/2 \(http:\/\/\) on 7000/,
      ],
      [
        "--gateway=http://gateway:8443",
        "--gateway=http://gateway:8444",
        /proxy: --gateway http:\/\/gateway:8444: gateway does not listen on 8444/,
      ],
      [
        "--gateway=http://gateway:8443",
        "--gateway=http://gateway:2020",
        /2020 is gateway's --stat-addr \(stats endpoint\), not a gateway/,
      ],
      [
        "--gateway=http://gateway:8443",
        "--gateway=http://relay:2003",
        /2003 is relay's --listen-addr/,
      ],
      [
        "- --listen-addr=0.0.0.0:8443",
        "- --listen-addr=0.0.0.0:9443",
        /proxy: --gateway http:\/\/gateway:8443: gateway does not listen on 8443/,
      ],
      // polymurctl.
      [
        "polymurctl dest add carbon-a",
        "polymurctl dest put carbon-a",
        /polymurctl dest: no subcommand "put" \(add, rm, ls\)/,
      ],
      ["polymurctl key create", "polymurctl keys create", /polymurctl has no command "keys"/],
      ["--all --json", "--every --json", /setup: polymurctl dest: unknown flag --every/],
      [
        "POLYMUR_SERVER: http://control:7000",
        "POLYMUR_SERVER: http://control:7002",
        /setup: polymurctl dest ls --server http:\/\/control:7002: control does not listen on 7002/,
      ],
      ["[CMD, polymurctl, status", "[CMD, polymurctl, state", /polymurctl has no command "state"/],
      [
        "          done | nc proxy 2003",
        "          done | polymur proxy --gateway=http://gateway:8443",
        /remote-sender: runs polymur from a shell script/,
      ],
      // Credentials.
      [
        "demo-node-token-NOT-A-SECRET",
        "demo-admin-token-NOT-A-SECRET",
        /POLYMUR_NODE_TOKEN must differ from POLYMUR_ADMIN_TOKEN/,
      ],
      [
        "POLYMUR_NODE_TOKEN: *node-token\n    volumes:\n      - relay-state",
        "POLYMUR_NODE_TOKEN: guess\n    volumes:\n      - relay-state",
        /relay: its node credential \(POLYMUR_NODE_TOKEN\) is not control's/,
      ],
      [
        "POLYMUR_ADMIN_TOKEN: *admin-token\n    volumes:\n      - proxy-key",
        "POLYMUR_ADMIN_TOKEN: guess\n    volumes:\n      - proxy-key",
        /setup: polymurctl key create: its admin credential \(POLYMUR_ADMIN_TOKEN\) is not control's/,
      ],
      [
        "POLYMUR_ADMIN_TOKEN: *admin-token # polymurctl's credential",
        "POLYMUR_ADMINTOKEN: *admin-token",
        /control: environment POLYMUR_ADMINTOKEN is not an option polymur control reads/,
      ],
      // The proxy's API key, written by setup into its --config file.
      [
        "'api-key = %s",
        "'api-kye = %s",
        /setup writes "api-kye = …" into .*proxy.conf, not an option of polymur proxy/,
      ],
      ["'api-key = %s", "'batch-delay = %s", /an API key is required/],
      [
        "proxy-key:/var/lib/polymur/keys:ro",
        "proxy-spool:/var/lib/polymur/keys:ro",
        /proxy: --config .* is not on a volume it shares with setup/,
      ],
      [
        "      setup:\n        condition: service_completed_successfully\n      gateway:",
        "      setup:\n        condition: service_started\n      gateway:",
        /proxy: must start after setup writes its --config/,
      ],
      [
        'restart: "no"',
        "restart: unless-stopped",
        /waits for setup to complete, but setup restarts/,
      ],
      // Listeners, ports, health checks.
      ["--stat-addr=0.0.0.0:2020", "--stat-addr=127.0.0.1:2020", /binds 127\.0\.0\.1, unreachable/],
      ['"127.0.0.1:2020:2020"', '"2003:2020"', /host port 2003\/tcp already published/],
      [
        '"127.0.0.1:2021:2020"',
        '"2021:2020"',
        /publishes the stats endpoint \(2021:2020\) on every host interface/,
      ],
      [
        '"127.0.0.1:2021:2020"',
        '"127.0.0.1:2021:2021"',
        /gateway: publishes 127.0.0.1:2021:2021 but listens on no tcp port 2021/,
      ],
      ["--api-addr=", "--api-addr=0.0.0.0:2030", /not a loopback address: set --api-token/],
      ["127.0.0.1:2020/readyz", "127.0.0.1:2003/readyz", /health check fetches \/readyz on 2003/],
      // Builds and images.
      [
        "    dockerfile: Dockerfile\n  image: polymur:dev",
        "    dockerfile: Nope\n  image: polymur:dev",
        /Dockerfile Nope does not exist/,
      ],
      ["image: alpine:3.20", "image: alpine", /no pinned tag/],
      // Senders.
      ["nc relay 2003", "nc relay 2004", /nc relay 2004: relay does not listen on 2004/],
      ["nc relay 2003", "nc relay 2020", /nc relay 2020: that is --stat-addr/],
      ["nc proxy 2003", "nc proxy 2020", /nc proxy 2020: that is --stat-addr/],
      ["nc proxy 2003", "nc gateway 8443", /nc gateway 8443: that is --listen-addr, not plaintext/],
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
