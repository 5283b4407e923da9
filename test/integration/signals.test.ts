import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ControlPlaneProcess } from "../fixtures/control-plane.ts";
import type { LoggedProcess } from "../fixtures/logged-process.ts";
import { startProxy, TempDir } from "../fixtures/proxy-gateway.ts";

// Every role answers signals the same way (cli/polymur/signals.ts): SIGTERM
// stops it gracefully with exit 0; SIGHUP reloads what the role can reload,
// and a role that reloads nothing says so and keeps running (SIGHUP's default
// action would kill it). The relay's reloads are tested in relay.test.ts.

const processes: LoggedProcess[] = [];
const dirs: TempDir[] = [];
afterEach(async () => {
  for (const p of processes.splice(0)) await p.stop();
  for (const d of dirs.splice(0)) d.close();
});

/** Resolves once a TCP connection to 127.0.0.1:port is accepted. */
function accepts(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1", () => {
      s.destroy();
      resolve();
    });
    s.once("error", reject);
  });
}

describe("signals", () => {
  it("a proxy logs that SIGHUP reloads nothing, keeps serving, and stops on SIGTERM", async () => {
    // No gateway is listening there: the proxy retries in the background and still serves senders.
    const proxy = await startProxy("http://127.0.0.1:9", "some-key");
    processes.push(proxy);
    proxy.kill("SIGHUP");
    await proxy.waitForLog(
      (l) => l.msg === "SIGHUP: a proxy reloads nothing; restart it to change options",
    );
    await accepts(proxy.port);
    expect(proxy.child.exitCode).toBeNull();
    expect(await proxy.stop()).toBe(0);
  });

  it("a control plane logs that SIGHUP reloads nothing, keeps serving, and stops on SIGTERM", async () => {
    const dir = new TempDir();
    dirs.push(dir);
    const cp = await ControlPlaneProcess.start(["--state-dir", dir.path("state")]);
    processes.push(cp);
    cp.kill("SIGHUP");
    await cp.waitForLog(
      (l) => l.msg === "SIGHUP: a control plane reloads nothing; restart it to change options",
    );
    await accepts(cp.port);
    expect(cp.child.exitCode).toBeNull();
    expect(await cp.stop()).toBe(0);
  });
});
