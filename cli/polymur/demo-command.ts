// `polymur demo`: docker-compose.yml's topology on one machine, without
// Docker. A control plane; a managed relay and gateway that take their
// destinations (and the gateway its API key) from it; a proxy streaming to
// the gateway; two carbon-caches (or two line sinks when carbon is not
// installed); a sender into the relay and one into the proxy. Every polymur
// process is a real one (this program with a role), on 127.0.0.1 with ports
// chosen by the kernel; all state lives in one temp dir, removed on Ctrl-C.
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { ErrorCode, PolymurError } from "../../common/errors.ts";
import { type DemoLogLine, DemoProcess, demoBins, runPolymurctl } from "./demo-process.ts";
import { centralLines, type DemoSender, remoteLines, startSender } from "./demo-senders.ts";
import { carbonInstalled, type DemoSink, startCarbonCache, startLineSink } from "./demo-sinks.ts";
import { readyText } from "./demo-text.ts";

const USAGE = `usage: polymur demo [--sink auto|carbon|lines]

Runs the whole polymur topology on this machine, without Docker: a control
plane, a managed relay and gateway, a proxy with an API key, two carbon-caches
(Debian's graphite-carbon, when installed; --sink lines: two line sinks that
write what arrives to files) and a sender into the relay and one into the proxy.
Everything listens on 127.0.0.1 with free ports; state is in a temp dir.
It prints where to look once everything is up. Ctrl-C stops it all and removes
the temp dir.`;

type SinkKind = "auto" | "carbon" | "lines";

/** Everything the demo started, stopped in reverse order. */
interface Running {
  dir: string;
  sinks: DemoSink[];
  processes: DemoProcess[];
  senders: DemoSender[];
}

/** `polymur demo`: runs until SIGINT/SIGTERM, then stops everything and exits 0. */
export async function runDemo(argv: string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(USAGE);
    return;
  }
  const sink = parseSinkArg(argv);
  if (sink === "carbon" && !carbonInstalled()) {
    throw new PolymurError(
      ErrorCode.Config,
      "--sink carbon: /usr/bin/carbon-cache not found (Debian: apt-get install graphite-carbon python3-whisper)",
    );
  }
  const useCarbon = sink === "carbon" || (sink === "auto" && carbonInstalled());
  const dir = await mkdtemp(path.join(tmpdir(), "polymur-demo-"));
  const run: Running = { dir, sinks: [], processes: [], senders: [] };
  let stopping = false;
  const stop = (why: string, code: number): void => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${why}: stopping everything...`);
    void shutdown(run).then(
      (clean) => {
        if (clean) console.log(`stopped; removed ${dir}`);
        process.exit(clean ? code : 1);
      },
      (err: unknown) => {
        console.error(`polymur demo: shutdown failed: ${(err as Error).message}`);
        process.exit(1);
      },
    );
  };
  let signals = 0;
  const onSignal = (signal: string): void => {
    if (++signals > 1) {
      console.log(`${signal} again: killing everything`);
      process.exit(130); // the exit hook of process-groups.ts kills the groups
    }
    stop(signal, 0);
  };
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  try {
    console.log(`polymur demo: starting in ${dir}`);
    const text = await start(run, useCarbon);
    if (stopping) return;
    console.log(text);
    for (const p of run.processes) {
      void p.exit.then((code) => {
        if (!p.stopping) stop(`${p.name} exited (code ${code}); its log: ${p.logFile}`, 1);
      });
    }
    const status = setInterval(() => void printArrived(run), 10_000);
    status.unref();
  } catch (err) {
    if (stopping) return;
    stopping = true;
    await shutdown(run);
    throw new PolymurError(ErrorCode.Config, `demo: ${(err as Error).message}`);
  }
}

function parseSinkArg(argv: string[]): SinkKind {
  let sink: SinkKind = "auto";
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = a === "--sink" ? argv[++i] : a.startsWith("--sink=") ? a.slice(7) : undefined;
    if (value === "auto" || value === "carbon" || value === "lines") sink = value;
    else if (value !== undefined || a.startsWith("--sink")) {
      throw new PolymurError(
        ErrorCode.Config,
        `--sink takes auto, carbon or lines, not "${value ?? ""}"`,
      );
    } else {
      throw new PolymurError(ErrorCode.Config, `unexpected argument "${a}"\n${USAGE}`);
    }
  }
  return sink;
}

/** Starts everything in order; returns the text that says where to look. */
async function start(run: Running, useCarbon: boolean): Promise<string> {
  const { dir } = run;
  const logs = path.join(dir, "logs");
  await mkdir(logs);
  const adminToken = `demo-admin-${randomBytes(12).toString("hex")}`;
  const nodeToken = `demo-node-${randomBytes(12).toString("hex")}`;
  // Nothing from the user's POLYMUR_* environment: each role gets what the demo sets.
  const baseEnv: NodeJS.ProcessEnv = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("POLYMUR_")),
  );
  const bin = demoBins().polymur;
  const polymur = async (
    name: string,
    args: string[],
    env: NodeJS.ProcessEnv,
  ): Promise<{ p: DemoProcess; listening: DemoLogLine }> => {
    const p = new DemoProcess({
      name,
      command: process.execPath,
      args: [bin, ...args, "--log-level=info"],
      env: { ...baseEnv, ...env },
      logFile: path.join(logs, `${name}.log`),
    });
    run.processes.push(p);
    return { p, listening: await p.waitForLog((l) => l["msg"] === "listening", 30_000) };
  };

  for (const name of useCarbon ? ["carbon-a", "carbon-b"] : ["sink-a", "sink-b"]) {
    run.sinks.push(useCarbon ? await startCarbonCache(name, dir) : await startLineSink(name, dir));
  }

  const control = await polymur(
    "control",
    ["control", "--listen-addr=127.0.0.1:0", `--state-dir=${path.join(dir, "control")}`],
    { POLYMUR_ADMIN_TOKEN: adminToken, POLYMUR_NODE_TOKEN: nodeToken },
  );
  const server = `http://127.0.0.1:${control.listening["port"] as number}`;

  // What docker-compose.yml's one-shot `setup` does, with the real polymurctl.
  const ctlEnv = { ...baseEnv, POLYMUR_SERVER: server, POLYMUR_ADMIN_TOKEN: adminToken };
  await runPolymurctl(["dest", "add", ...run.sinks.map((s) => s.destination), "--all"], ctlEnv);
  const created = JSON.parse(
    await runPolymurctl(["key", "create", "site-remote", "--json"], ctlEnv),
  ) as {
    secret?: string;
  };
  if (typeof created.secret !== "string")
    throw new Error("polymurctl key create printed no secret");
  const proxyConf = path.join(dir, "proxy.conf");
  await writeFile(proxyConf, `api-key = ${created.secret}\n`, { mode: 0o600 });

  const nodeEnv = { POLYMUR_NODE_TOKEN: nodeToken };
  const managed = (group: string): string[] => [
    "--listen-addr=127.0.0.1:0",
    `--control-plane=${server}`,
    `--group=${group}`,
    `--state-dir=${path.join(dir, group)}`,
    "--queue-size=64MiB",
    "--backoff-max=5",
    "--stat-addr=127.0.0.1:0",
    "--metrics-flush=10",
  ];
  const relay = await polymur(
    "relay",
    [
      "relay",
      ...managed("site-central"),
      "--overflow=drop-oldest",
      "--api-addr=", // a managed node refuses the line API's changes anyway
      "--metrics-prefix=polymur.demo.relay",
      "--workers=1",
    ],
    nodeEnv,
  );
  const gateway = await polymur(
    "gateway",
    [
      "gateway",
      ...managed("gateways"),
      "--key-prefix",
      "--overflow=block",
      "--metrics-prefix=polymur.demo.gateway",
    ],
    nodeEnv,
  );
  const proxy = await polymur(
    "proxy",
    [
      "proxy",
      "--listen-addr=127.0.0.1:0",
      `--gateway=http://127.0.0.1:${gateway.listening["port"] as number}`,
      `--config=${proxyConf}`,
      "--compression=zstd",
      `--spool-dir=${path.join(dir, "spool")}`,
      "--stat-addr=127.0.0.1:0",
    ],
    {},
  );

  const relayPort = relay.listening["port"] as number;
  const proxyPort = proxy.listening["port"] as number;
  run.senders.push(startSender({ port: relayPort, lines: centralLines }));
  run.senders.push(startSender({ port: proxyPort, lines: remoteLines }));

  return readyText({
    dir,
    server,
    adminToken,
    carbon: useCarbon,
    sinks: run.sinks,
    processes: run.processes,
    relay: { port: relayPort, statsPort: relay.listening["statsPort"] as number },
    gateway: {
      port: gateway.listening["port"] as number,
      statsPort: gateway.listening["statsPort"] as number,
    },
    proxy: { port: proxyPort, statsPort: proxy.listening["statsPort"] as number },
  });
}

async function printArrived(run: Running): Promise<void> {
  const parts = await Promise.all(run.sinks.map(async (s) => `${s.name} ${await s.arrived()}`));
  const sent = run.senders.reduce((n, s) => n + s.sent, 0);
  console.log(`[demo] sent ${sent} datapoints; arrived: ${parts.join(", ")}`);
}

/**
 * Stops the senders, then each process in reverse start order (proxy,
 * gateway, relay, control plane: each drains into the next, still running),
 * then the sinks; removes the temp dir. True if every polymur process exited 0.
 */
async function shutdown(run: Running): Promise<boolean> {
  for (const s of run.senders) s.stop();
  let clean = true;
  for (const p of [...run.processes].reverse()) {
    await p.stop();
    const code = await p.exit;
    if (code !== 0) {
      clean = false;
      console.error(`${p.name} exited with code ${code}; its log: ${p.logFile}`);
    }
  }
  for (const s of [...run.sinks].reverse()) await s.stop();
  if (!clean) {
    console.error(`kept ${run.dir} for its logs`);
    return false;
  }
  await rm(run.dir, { recursive: true, force: true });
  return true;
}
