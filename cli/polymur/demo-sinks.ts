// Where the demo's datapoints end up: two real carbon-caches (Debian's
// graphite-carbon) when they are installed, otherwise two line sinks inside
// the demo that append what arrives to a file.
import { existsSync } from "node:fs";
import { appendFile, mkdir, readdir, writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import {
  carbonDaemonSettings,
  carbonReceiverSettings,
  UNTHROTTLED_CACHE_SETTINGS,
} from "./carbon-conf.ts";
import { DemoProcess } from "./demo-process.ts";

const HOST = "127.0.0.1";
const PYTHON = "/usr/bin/python3";
const CARBON_CACHE = "/usr/bin/carbon-cache";

/** One destination of the demo fleet. */
export interface DemoSink {
  /** "carbon-a", "sink-b". */
  readonly name: string;
  /** `127.0.0.1:PORT:INSTANCE`, the form polymurctl dest add takes. */
  readonly destination: string;
  /** Where to look: the whisper directory or the file of lines. */
  readonly where: string;
  /** The carbon-cache process, if it is one. */
  readonly process: DemoProcess | undefined;
  /** A short account of what has arrived ("12 lines", "5 whisper files"). */
  arrived(): Promise<string>;
  stop(): Promise<void>;
}

/** Whether Debian's carbon-cache (and the Python it runs on) is installed. */
export function carbonInstalled(): boolean {
  return existsSync(CARBON_CACHE) && existsSync(PYTHON);
}

/**
 * A TCP server in the demo process: every line that arrives is appended to
 * `file` (Graphite plaintext, as polymur forwarded it).
 */
export async function startLineSink(name: string, dir: string): Promise<DemoSink> {
  const file = path.join(dir, `${name}.lines`);
  await writeFile(file, "");
  let lines = 0;
  let writing: Promise<void> = Promise.resolve();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    socket.on("data", (chunk: Buffer) => {
      for (const b of chunk) if (b === 0x0a) lines++;
      writing = writing.then(() => appendFile(file, chunk));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, HOST, () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    name,
    destination: `${HOST}:${port}:${name.slice(-1)}`,
    where: file,
    process: undefined,
    arrived: async () => `${lines} lines`,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await writing;
    },
  };
}

/**
 * A real carbon-cache in `dir` (config, whisper files under whisper/, logs),
 * on free ports of 127.0.0.1, with the retentions of docker/carbon.
 */
export async function startCarbonCache(name: string, dir: string): Promise<DemoSink> {
  const instance = name.slice(-1);
  const root = path.join(dir, name);
  const whisper = path.join(root, "whisper");
  for (const sub of ["conf", "log", "run", "whisper", "lists"]) {
    await mkdir(path.join(root, sub), { recursive: true });
  }
  const [line, pickle, query] = (await freePorts(3)) as [number, number, number];
  const conf = [
    "[cache]",
    ...carbonDaemonSettings({
      storage: root,
      conf: `${root}/conf`,
      log: `${root}/log`,
      pid: `${root}/run`,
    }),
    `LOCAL_DATA_DIR = ${whisper}`,
    `WHITELISTS_DIR = ${root}/lists`,
    ...UNTHROTTLED_CACHE_SETTINGS,
    ...carbonReceiverSettings(HOST, { line, pickle, query }),
    "",
  ];
  await writeFile(path.join(root, "conf/carbon.conf"), conf.join("\n"));
  await writeFile(
    path.join(root, "conf/storage-schemas.conf"),
    "[default]\npattern = .*\nretentions = 10s:6h,1m:7d,10m:1y\n",
  );
  const p = new DemoProcess({
    name,
    command: PYTHON,
    args: [
      CARBON_CACHE,
      `--config=${root}/conf/carbon.conf`,
      `--instance=${instance}`,
      "--nodaemon",
      "start",
    ],
    env: { ...process.env, PYTHONWARNINGS: "ignore", PYTHONDONTWRITEBYTECODE: "1" },
    logFile: path.join(root, "carbon.log"),
  });
  const deadline = Date.now() + 30_000;
  while (!(await canConnect(line))) {
    if (p.exited || Date.now() > deadline) {
      await p.stop();
      throw new Error(`${name} (carbon-cache) did not start on port ${line}; see ${p.logFile}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    name,
    destination: `${HOST}:${line}:${instance}`,
    where: whisper,
    process: p,
    async arrived() {
      const files = await readdir(whisper, { recursive: true }).catch(() => [] as string[]);
      return `${files.filter((f) => f.endsWith(".wsp")).length} whisper files`;
    },
    stop: () => p.stop(),
  };
}

/**
 * Free TCP ports on 127.0.0.1 for carbon, which cannot bind port 0: bound at
 * port 0 all at once, then released (another program could take one in the
 * gap; carbon then fails to start and says so in its log).
 */
async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      servers.push(
        await new Promise<net.Server>((resolve, reject) => {
          const s = net.createServer();
          s.once("error", reject);
          s.listen(0, HOST, () => resolve(s));
        }),
      );
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: HOST });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}
