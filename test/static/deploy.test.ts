// Checks deploy/ (systemd units, example configs and credentials files,
// Kubernetes manifests) against the real option tables, config parser,
// option builders and stats endpoint, so the service files cannot drift from
// what polymur accepts: every option named exists for its role, every
// example config parses and builds, the units' directories, stop timeouts and
// reloads match the options, manifests' ports match the flags and their
// probes fetch what the stats endpoint serves. `systemd-analyze verify` runs
// on the units where it is installed.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import {
  envName,
  getAddress,
  getSeconds,
  type OptionSpec,
  parseArgv,
  parseConfigFile,
  type RawOptions,
  resolveOptions,
} from "../../common/options.ts";
import { buildControlOptions, CONTROL_OPTIONS } from "../../controlplane/control-options.ts";
import { buildGatewayOptions, GATEWAY_OPTIONS } from "../../dataplane/nodes/gateway-options.ts";
import { buildProxyOptions, PROXY_OPTIONS } from "../../dataplane/nodes/proxy-options.ts";
import {
  buildNodeOptions,
  buildRelayConfig,
  RELAY_OPTIONS,
} from "../../dataplane/nodes/relay-options.ts";
import { startStatsServer } from "../../dataplane/observe/stats-server.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const DEPLOY = path.join(ROOT, "deploy");
const PROGRAM = "/usr/local/bin/polymur";

/** Each role's option table and the startup checks its command runs. */
const ROLES: Record<string, { specs: readonly OptionSpec[]; build(o: RawOptions): unknown }> = {
  relay: { specs: RELAY_OPTIONS, build: (o) => [buildRelayConfig(o), buildNodeOptions(o)] },
  gateway: { specs: GATEWAY_OPTIONS, build: buildGatewayOptions },
  proxy: { specs: PROXY_OPTIONS, build: buildProxyOptions },
  control: { specs: CONTROL_OPTIONS, build: buildControlOptions },
};
/** Options naming a file a role reads at start (replaced by a stand-in to build). */
const INPUT_FILES = ["tls-cert", "tls-key", "ca", "control-ca", "keys-file"];

const scratch = mkdtempSync(path.join(tmpdir(), "polymur-deploy-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const standIn = path.join(scratch, "stand-in.pem");
writeFileSync(standIn, "stand-in\n");

/** `name = value` text as parseConfigFile reads it (it takes a path). */
function parseConfigText(specs: readonly OptionSpec[], text: string): RawOptions {
  const file = path.join(scratch, `config-${Math.random().toString(36).slice(2)}.conf`);
  writeFileSync(file, text);
  return parseConfigFile(specs, file);
}

/** KEY=value lines of an EnvironmentFile, commented-out ones too (value ""). */
function envFile(text: string): Map<string, string> {
  const vars = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^#?([A-Z][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) vars.set(m[1]!, m[2]!);
  }
  return vars;
}

/**
 * The options a role starts with from flags, environment and config file,
 * after its own checks (problems, if they fail). Secrets the environment
 * gives get stand-in values; files it reads, a stand-in file.
 */
function resolve(
  role: string,
  flags: RawOptions,
  envVars: Iterable<string>,
  file: RawOptions,
  problems: string[],
  where: string,
): RawOptions | null {
  const { specs, build } = ROLES[role]!;
  const env: NodeJS.ProcessEnv = {};
  for (const v of envVars) env[v] = `stand-in-${v.toLowerCase()}`;
  try {
    const o = resolveOptions(specs, flags, env, file);
    const built = new Map(o);
    for (const name of INPUT_FILES) if (built.get(name)) built.set(name, standIn);
    build(built);
    return o;
  } catch (err) {
    problems.push(`${where}: polymur ${role} refuses it: ${(err as Error).message}`);
    return null;
  }
}

function knownEnv(role: string, vars: Iterable<string>, where: string, problems: string[]): void {
  const names = new Set(ROLES[role]!.specs.map((s) => envName(s.name)));
  for (const v of vars) {
    if (!names.has(v)) problems.push(`${where}: ${v} is not a variable polymur ${role} reads`);
  }
}

/**
 * An example config: it parses, its commented-out options exist, it builds
 * (with the variables its example credentials file sets).
 */
function checkConfig(role: string, text: string): string[] {
  const problems: string[] = [];
  const where = `deploy/etc/polymur/${role}.conf`;
  const known = new Set(ROLES[role]!.specs.map((s) => s.name));
  for (const line of text.split("\n")) {
    const m = /^#\s*([a-z][a-z0-9-]*)\s*=\s/.exec(line);
    if (m && !known.has(m[1]!)) problems.push(`${where}: "# ${m[1]} = …" is not an option`);
  }
  try {
    const vars = envFile(readFileSync(path.join(DEPLOY, `etc/polymur/${role}.env`), "utf8"));
    resolve(
      role,
      new Map(),
      vars.keys(),
      parseConfigText(ROLES[role]!.specs, text),
      problems,
      where,
    );
  } catch (err) {
    problems.push(`${where}: ${(err as Error).message}`);
  }
  return problems;
}

/** `[Section]` → key → values (a key may repeat). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current = new Map<string, string[]>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const section = /^\[(.+)\]$/.exec(line);
    if (section) {
      current = new Map();
      sections.set(section[1]!, current);
      continue;
    }
    const eq = line.indexOf("=");
    const key = line.slice(0, eq);
    current.set(key, [...(current.get(key) ?? []), line.slice(eq + 1)]);
  }
  return sections;
}

/** A unit against its role's options, its example config and credentials file. */
function checkUnit(role: string, text: string): string[] {
  const problems: string[] = [];
  const where = `polymur-${role}.service`;
  const service = parseUnit(text).get("Service") ?? new Map<string, string[]>();
  const one = (key: string): string => service.get(key)?.at(-1) ?? "";
  const expectKey = (key: string, value: string): void => {
    if (one(key) !== value) problems.push(`${where}: ${key}=${one(key)}, expected ${value}`);
  };
  expectKey("Type", "simple");
  expectKey("User", "polymur");
  expectKey("KillSignal", "SIGTERM");
  expectKey("Restart", "on-failure");
  expectKey("NoNewPrivileges", "yes");
  expectKey("ProtectSystem", "strict");
  if (!/^\d+$/.test(one("LimitNOFILE"))) problems.push(`${where}: no LimitNOFILE`);
  const [program, unitRole, ...args] = one("ExecStart").split(/\s+/);
  if (program !== PROGRAM) problems.push(`${where}: ExecStart runs ${program}, not ${PROGRAM}`);
  if (unitRole !== role) problems.push(`${where}: ExecStart runs polymur ${unitRole}`);
  let flags: RawOptions = new Map();
  try {
    const parsed = parseArgv(ROLES[role]!.specs, args);
    flags = parsed.flags;
    if (parsed.positional.length > 0) problems.push(`${where}: stray ${parsed.positional[0]}`);
  } catch (err) {
    problems.push(`${where}: ExecStart: ${(err as Error).message}`);
  }
  // Its config file and credentials file are the examples in deploy/etc.
  const config = flags.get("config") ?? "";
  const envPath = one("EnvironmentFile").replace(/^-/, "");
  const example = (p: string) => path.join(DEPLOY, "etc/polymur", path.basename(p));
  let file: RawOptions = new Map();
  let vars = new Map<string, string>();
  try {
    file = parseConfigFile(ROLES[role]!.specs, example(config));
    vars = envFile(readFileSync(example(envPath), "utf8"));
  } catch (err) {
    problems.push(`${where}: ${(err as Error).message}`);
  }
  if (config !== `/etc/polymur/${role}.conf`) problems.push(`${where}: --config ${config}`);
  if (envPath !== `/etc/polymur/${role}.env`) problems.push(`${where}: EnvironmentFile ${envPath}`);
  knownEnv(role, vars.keys(), `${role}.env`, problems);
  const o = resolve(role, flags, vars.keys(), file, problems, where);
  if (o === null) return problems;
  // What it writes is its StateDirectory, writable under ProtectSystem=strict.
  const state = `/var/lib/${one("StateDirectory")}`;
  const writable = new Set([state, ...(service.get("ReadWritePaths") ?? [])]);
  for (const dir of ["state-dir", "spool-dir", "queue-dir"]) {
    const v = o.get(dir);
    if (v === undefined || (v === "" && dir !== "state-dir")) continue;
    if (dir !== "queue-dir" && v !== state)
      problems.push(`${where}: --${dir} ${v} is not StateDirectory ${state}`);
    if (![...writable].some((w) => v === w || v.startsWith(`${w}/`)))
      problems.push(`${where}: --${dir} ${v} is not writable (ReadWritePaths)`);
  }
  // systemd waits for the drain before SIGKILL.
  const stop = Number(one("TimeoutStopSec"));
  const drain = o.has("shutdown-timeout") ? getSeconds(o, "shutdown-timeout") : 0;
  if (!(stop > drain))
    problems.push(`${where}: TimeoutStopSec=${stop} <= shutdown-timeout ${drain}`);
  // `systemctl reload` exactly where SIGHUP reloads something.
  const reloads = ROLES[role]!.specs.some((s) => s.reloadable === true);
  const reload = one("ExecReload");
  if (reloads && reload !== "/bin/kill -HUP $MAINPID")
    problems.push(`${where}: ExecReload=${reload}, expected /bin/kill -HUP $MAINPID`);
  if (!reloads && reload !== "")
    problems.push(`${where}: ExecReload, but a ${role} reloads nothing`);
  return problems;
}

interface Container {
  args?: string[];
  env?: Array<{ name: string }>;
  ports?: Array<{ name?: string; containerPort: number }>;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
}
interface Probe {
  httpGet?: { path: string; port: string | number };
  grpc?: { port: number };
}
interface Manifest {
  kind: string;
  metadata: { name: string };
  spec: {
    template?: { spec: { containers: Container[]; terminationGracePeriodSeconds?: number } };
    selector?: Record<string, string>;
    ports?: Array<{ port: number; targetPort: string | number }>;
  };
}

/** Kubernetes manifests against the option tables and the live stats endpoint. */
async function checkManifests(texts: string[], statsUrl: string): Promise<string[]> {
  const problems: string[] = [];
  const docs = texts.flatMap((t) => parseAllDocuments(t).map((d) => d.toJS() as Manifest));
  const listens = new Map<string, { role: string; ports: Map<string, number> }>();
  const controlUrls: Array<[string, string]> = [];
  for (const d of docs.filter((m) => m.kind === "Deployment")) {
    const where = d.metadata.name;
    const pod = d.spec.template!.spec;
    for (const c of pod.containers) {
      const [role = "", ...args] = c.args ?? [];
      if (ROLES[role] === undefined) {
        problems.push(`${where}: polymur has no role "${role}"`);
        continue;
      }
      let flags: RawOptions = new Map();
      try {
        flags = parseArgv(ROLES[role]!.specs, args).flags;
      } catch (err) {
        problems.push(`${where}: ${(err as Error).message}`);
      }
      const vars = (c.env ?? []).map((e) => e.name).filter((n) => n.startsWith("POLYMUR_"));
      knownEnv(role, vars, where, problems);
      const o = resolve(role, flags, vars, new Map(), problems, where);
      if (o === null) continue;
      const ports = new Map((c.ports ?? []).map((p) => [p.name ?? "", p.containerPort]));
      const portOf = (p: string | number) => (typeof p === "number" ? p : ports.get(p));
      const addr = (name: string) => (o.has(name) ? getAddress(o, name) : null);
      const bound = ["listen-addr", "udp-addr", "stat-addr"].map(addr).filter((a) => a !== null);
      for (const [name, port] of ports) {
        if (!bound.some((a) => a.port === port))
          problems.push(`${where}: port ${name} ${port} is no address polymur ${role} listens on`);
      }
      for (const a of bound) {
        if (![...ports.values()].includes(a.port))
          problems.push(`${where}: listens on ${a.port}, not a containerPort`);
      }
      const stat = addr("stat-addr");
      const grace = pod.terminationGracePeriodSeconds ?? 30;
      if (o.has("shutdown-timeout") && !(grace > getSeconds(o, "shutdown-timeout")))
        problems.push(`${where}: terminationGracePeriodSeconds ${grace} <= --shutdown-timeout`);
      for (const [kind, probe] of [
        ["liveness", c.livenessProbe],
        ["readiness", c.readinessProbe],
      ] as const) {
        if (probe === undefined) problems.push(`${where}: no ${kind} probe`);
        else if (probe.grpc !== undefined) {
          if (
            !["control", "gateway"].includes(role) ||
            probe.grpc.port !== addr("listen-addr")?.port
          )
            problems.push(
              `${where}: ${kind} gRPC probe on ${probe.grpc.port}: no gRPC health there`,
            );
        } else if (probe.httpGet !== undefined) {
          const port = portOf(probe.httpGet.port);
          if (stat === null || port !== stat.port)
            problems.push(`${where}: ${kind} probe on ${port}, not --stat-addr`);
          else if (stat.host !== "0.0.0.0" && stat.host !== "::")
            problems.push(`${where}: --stat-addr ${stat.host} is unreachable for the kubelet`);
          const status = (await fetch(new URL(probe.httpGet.path, statsUrl))).status;
          if (status !== 200)
            problems.push(
              `${where}: ${kind} probe ${probe.httpGet.path}: the stats endpoint answers ${status}`,
            );
        }
      }
      listens.set(where, { role, ports });
      const cp = o.get("control-plane");
      if (cp) controlUrls.push([where, cp]);
    }
  }
  // Services forward to ports their Deployment's container has.
  const services = new Map<string, number>();
  for (const s of docs.filter((m) => m.kind === "Service")) {
    const target = listens.get(s.metadata.name);
    if (target === undefined)
      problems.push(`service ${s.metadata.name}: no Deployment by that name`);
    for (const p of s.spec.ports ?? []) {
      const port =
        typeof p.targetPort === "number" ? p.targetPort : target?.ports.get(p.targetPort);
      if (port === undefined) problems.push(`service ${s.metadata.name}: no port ${p.targetPort}`);
      if (target?.role === "control" && port !== undefined) services.set(s.metadata.name, p.port);
    }
  }
  for (const [where, url] of controlUrls) {
    const u = new URL(url);
    if (services.get(u.hostname) !== Number(u.port))
      problems.push(`${where}: --control-plane ${url} is no control plane Service port`);
  }
  return problems;
}

// ---------------------------------------------------------------------------

const read = (p: string) => readFileSync(path.join(DEPLOY, p), "utf8");
const k8sFiles = readdirSync(path.join(DEPLOY, "k8s")).filter((f) => f.endsWith(".yaml"));
let stats: http.Server;
let statsUrl = "";
beforeAll(async () => {
  const source = { stats: () => ({}) as never, rejects: () => [], ready: () => true };
  stats = await startStatsServer(source, "127.0.0.1", 0);
  statsUrl = `http://127.0.0.1:${(stats.address() as AddressInfo).port}/`;
});
afterAll(() => new Promise((done) => stats.close(done)));

describe("deploy/", () => {
  it.each(Object.keys(ROLES))("the %s unit and its example files fit polymur's options", (role) => {
    expect(checkUnit(role, read(`systemd/polymur-${role}.service`))).toEqual([]);
    expect(checkConfig(role, read(`etc/polymur/${role}.conf`))).toEqual([]);
  });

  it("the Kubernetes manifests fit the options, their ports and the stats endpoint", async () => {
    expect(k8sFiles.sort()).toEqual(["control.yaml", "gateway.yaml", "relay.yaml"]);
    expect(
      await checkManifests(
        k8sFiles.map((f) => read(`k8s/${f}`)),
        statsUrl,
      ),
    ).toEqual([]);
  });

  it("fails on what it should catch", async () => {
    const unit = read("systemd/polymur-relay.service");
    const unitMutations: Array<[string, string, RegExp]> = [
      ["--state-dir /var", "--state-directory /var", /unknown option --state-directory/],
      ["TimeoutStopSec=45", "TimeoutStopSec=20", /TimeoutStopSec=20 <= shutdown-timeout 30/],
      ["ExecReload=/bin/kill -HUP $MAINPID\n", "", /ExecReload=, expected/],
      ["StateDirectory=polymur/relay", "StateDirectory=polymur/x", /is not StateDirectory/],
      ["/usr/local/bin/polymur relay", "/usr/local/bin/polymur relays", /runs polymur relays/],
      [
        "--state-dir /var/lib/polymur/relay",
        "--state-dir /var/lib/polymur/relay --queue-dir /srv/queues",
        /--queue-dir \/srv\/queues is not writable/,
      ],
    ];
    for (const [from, to, expected] of unitMutations) {
      expect(unit.includes(from), from).toBe(true);
      expect(checkUnit("relay", unit.replace(from, to)).join("\n"), to).toMatch(expected);
    }
    const conf = read("etc/polymur/relay.conf");
    expect(checkConfig("relay", conf.replace("queue-size =", "queue-sise ="))).toEqual([
      expect.stringMatching(/unknown option "queue-sise"/),
    ]);
    expect(checkConfig("relay", conf.replace("# udp-addr =", "# udp-adr ="))[0]).toMatch(
      /udp-adr = …" is not an option/,
    );
    const relay = read("k8s/relay.yaml");
    const manifestMutations: Array<[string, string, RegExp]> = [
      ["path: /readyz", "path: /ready", /readiness probe \/ready: the stats endpoint answers 404/],
      ["--stat-addr=0.0.0.0:2020", "--stat-addr=127.0.0.1:2020", /unreachable for the kubelet/],
      ["containerPort: 2003", "containerPort: 2004", /listens on 2003, not a containerPort/],
      ["--group=default", "--groups=default", /unknown option --groups/],
      ["polymur-control:7000", "polymur-control:7001", /no control plane Service port/],
      ["terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 30", /<= --shutdown/],
    ];
    const others = ["control.yaml", "gateway.yaml"].map((f) => read(`k8s/${f}`));
    for (const [from, to, expected] of manifestMutations) {
      expect(relay.includes(from), from).toBe(true);
      const problems = await checkManifests([relay.replace(from, to), ...others], statsUrl);
      expect(problems.join("\n"), to).toMatch(expected);
    }
  });

  const analyze = spawnSync("which", ["systemd-analyze"], { encoding: "utf8" }).stdout.trim();
  if (analyze === "") console.warn("deploy.test.ts: no systemd-analyze here: units not verified");
  it.skipIf(analyze === "")("systemd-analyze verify accepts the units", () => {
    // verify checks that ExecStart's program exists: this checkout's stands in
    // for the installed one.
    const dir = mkdtempSync(path.join(scratch, "units-"));
    const units = Object.keys(ROLES).map((role) => {
      const file = path.join(dir, `polymur-${role}.service`);
      const text = read(`systemd/polymur-${role}.service`);
      writeFileSync(file, text.replace(`${PROGRAM} `, `${ROOT}/bin/polymur.js `));
      return file;
    });
    const r = spawnSync(analyze, ["verify", ...units], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });
});
