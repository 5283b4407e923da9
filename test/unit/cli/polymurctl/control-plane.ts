import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, vi } from "vitest";
import { ControlServer } from "../../../../controlplane/control-server.ts";
import { FileStore } from "../../../../controlplane/file-store.ts";

/** The control plane of a polymurctl command's test file (see cliControlPlane). */
export interface CliControlPlane {
  /** Its admin credential: "admin-token-for-<name>-cli". */
  readonly admin: string;
  /** Its store, open from the file's beforeAll on: a test writes node records to it as ReportStatus does. */
  readonly store: FileStore;
  /** Its address, for --server (from the file's beforeAll on). */
  readonly url: string;
}

/**
 * The real ControlServer, in this process, on a free port of 127.0.0.1, for
 * the tests of a polymurctl command: call it at the test file's top level,
 * where it registers a beforeAll that opens a FileStore in a new temporary
 * directory ("polymurctl-<name>-") and serves it (credentials
 * "admin-token-for-<name>-cli" and "node-token-for-<name>-cli"), with
 * polymurctl's configuration looked for in that directory and no
 * POLYMUR_SERVER from the environment; and an afterAll that closes the
 * server and the store, unstubs the environment and removes the directory.
 * The file's own beforeAll, registered after it, runs once the server is up.
 */
export function cliControlPlane(name: string): CliControlPlane {
  const admin = `admin-token-for-${name}-cli`;
  let dir = "";
  let store: FileStore | undefined;
  let server: ControlServer | undefined;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), `polymurctl-${name}-`));
    vi.stubEnv("XDG_CONFIG_HOME", join(dir, "config"));
    vi.stubEnv("POLYMURCTL_CONFIG", "");
    vi.stubEnv("POLYMUR_SERVER", "");
    store = new FileStore(join(dir, "state"));
    await store.open();
    server = await ControlServer.start({
      store,
      credentials: { admin, node: `node-token-for-${name}-cli` },
      host: "127.0.0.1",
      port: 0,
      replica: "r1",
      log: pino({ level: "silent" }),
      closeGraceMs: 100,
    });
  });
  afterAll(async () => {
    await server?.close();
    await store?.close();
    vi.unstubAllEnvs();
    if (dir !== "") rmSync(dir, { recursive: true, force: true });
  });
  const started = (): ControlServer => {
    if (server === undefined) throw new Error("the control plane starts in beforeAll");
    return server;
  };
  return {
    admin,
    get store(): FileStore {
      started();
      return store!;
    },
    get url(): string {
      return `http://127.0.0.1:${started().port}`;
    },
  };
}
