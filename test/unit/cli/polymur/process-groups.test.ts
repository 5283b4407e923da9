import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { signalGroup, trackGroup, untrackGroup } from "../../../../cli/polymur/process-groups.ts";

describe("process groups", () => {
  it("signals every process of a detached child's group", async () => {
    // A shell whose own child (sleep) is in its group: both get the signal.
    const child = spawn("/bin/sh", ["-c", "sleep 30 & wait"], { detached: true, stdio: "ignore" });
    const pid = child.pid!;
    trackGroup(pid);
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.once("exit", (_code, signal) => resolve(signal)),
    );
    signalGroup(pid, "SIGTERM");
    expect(await exited).toBe("SIGTERM");
    untrackGroup(pid);
    // The group is gone now: signalling it again is not an error.
    expect(() => signalGroup(pid, "SIGKILL")).not.toThrow();
  });
});
