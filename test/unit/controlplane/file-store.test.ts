import { spawn } from "node:child_process";
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorCode, PolymurError } from "../../../common/errors.ts";
import { addKey, EMPTY_STATE } from "../../../controlplane/control-state.ts";
import { type StoredState, updateState } from "../../../controlplane/control-store.ts";
import { FileStore } from "../../../controlplane/file-store.ts";

const dirs: string[] = [];
const stores: FileStore[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), "polymur-fs-"));
  dirs.push(d);
  return d;
}
async function open(dir: string): Promise<FileStore> {
  const s = new FileStore(dir);
  await s.open();
  stores.push(s);
  return s;
}
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const key = (name: string) => ({ name, digest: `sha256:${name}`, createdAtMs: 1, rotatedAtMs: 0 });

describe("FileStore", () => {
  it("starts empty at version 0, and keeps what it wrote across a reopen", async () => {
    const dir = tmp();
    const s = await open(dir);
    expect(s.current()).toEqual({ state: EMPTY_STATE, revision: 0n });
    const written = await updateState(s, (st) => addKey(st, key("a")));
    expect(written.version).toBe(1);
    await s.close();
    const again = await open(dir);
    expect(again.current()?.state).toEqual(written);
    expect(again.current()?.revision).toBe(1n);
  });

  it("keeps its directory and files private, a directory made looser before included", async () => {
    const dir = join(tmp(), "store");
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    const s = await open(dir);
    await updateState(s, (st) => addKey(st, key("a")));
    await s.compareAndSet(
      await s.read(),
      { ...addKey(s.current()!.state, key("b")), version: 2 },
      {
        kind: "key create",
        scopes: [{ all: true }],
        subject: "b",
        actor: "",
        replica: "r1",
        atMs: 1,
      },
    );
    // The history's folder is private too, and so is every version kept in it.
    for (const d of [dir, join(dir, "history")]) {
      expect(statSync(d).mode & 0o777, d).toBe(0o700);
      for (const f of readdirSync(d)) {
        const mode = statSync(join(d, f)).mode;
        expect(mode & 0o777, f).toBe(statSync(join(d, f)).isDirectory() ? 0o700 : 0o600);
      }
    }
    expect(readdirSync(dir)).toEqual(
      expect.arrayContaining(["state.json", "control.lock", "history"]),
    );
    expect(readdirSync(join(dir, "history"))).toEqual(["00000000000000000002.json"]);
  });

  it("compare-and-set: a write based on a stale read is refused; updateState re-reads", async () => {
    const s = await open(tmp());
    const base = await s.read();
    const first = await s.compareAndSet(base, { ...addKey(base.state, key("a")), version: 1 });
    expect(first?.revision).toBe(1n);
    const stale = await s.compareAndSet(base, { ...addKey(base.state, key("b")), version: 1 });
    expect(stale).toBeNull();
    expect(s.current()?.state.keys.map((k) => k.name)).toEqual(["a"]);
    // Concurrent updates through the loop all land, each on the previous one.
    await Promise.all(["b", "c", "d", "e"].map((n) => updateState(s, (st) => addKey(st, key(n)))));
    expect(s.current()?.state.version).toBe(5);
    expect(
      s
        .current()
        ?.state.keys.map((k) => k.name)
        .sort(),
    ).toEqual(["a", "b", "c", "d", "e"]);
  });

  it("tells watchers at once, in order", async () => {
    const s = await open(tmp());
    const seen: Array<{ v: number; dt: number }> = [];
    let t0 = 0;
    const stop = s.watch((st: StoredState) =>
      seen.push({ v: st.state.version, dt: Date.now() - t0 }),
    );
    t0 = Date.now();
    await updateState(s, (st) => addKey(st, key("a")));
    await updateState(s, (st) => addKey(st, key("b")));
    stop();
    await updateState(s, (st) => addKey(st, key("c")));
    expect(seen.map((x) => x.v)).toEqual([1, 2]);
    expect(seen[0]!.dt).toBeLessThan(1000);
  });

  it("refuses a second control plane on the same directory", async () => {
    const dir = tmp();
    await open(dir);
    const second = new FileStore(dir);
    await expect(second.open()).rejects.toThrow(/is in use by another control plane \(pid \d+\)/);
  });

  it("refuses to start on a damaged state file, saying what to do", async () => {
    const dir = tmp();
    writeFileSync(join(dir, "state.json"), '{"format":"polymur-control-state/1","state":{"vers');
    const s = new FileStore(dir);
    const err = await s.open().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PolymurError);
    expect((err as PolymurError).code).toBe(ErrorCode.StoreCorrupt);
    expect((err as Error).message).toMatch(/restore it from a backup or move it away/);
    await s.close();
  });

  it("survives being killed mid-write: the file always holds a whole state", async () => {
    const dir = tmp();
    // A separate process rewrites the state as fast as it can; SIGKILL lands mid-write.
    const storeUrl = new URL("../../../controlplane/file-store.ts", import.meta.url).href;
    const csUrl = new URL("../../../controlplane/control-store.ts", import.meta.url).href;
    const script = `
      import { FileStore } from ${JSON.stringify(storeUrl)};
      import { updateState } from ${JSON.stringify(csUrl)};
      const s = new FileStore(process.argv[1]);
      await s.open();
      const pad = "x".repeat(20000);
      for (;;) {
        // The key is named after the version it is written with: a torn state would not match.
        await updateState(s, (st) => ({ ...st, keys: [{ name: "k" + (st.version + 1), digest: pad, createdAtMs: 0, rotatedAtMs: 0 }] }));
      }`;
    for (let round = 0; round < 3; round++) {
      const child = spawn(process.execPath, ["--input-type=module", "-e", script, dir], {
        stdio: ["ignore", "ignore", "pipe"],
      });
      let stderr = "";
      child.stderr.on("data", (d: Buffer) => {
        stderr += d.toString();
      });
      const exited = new Promise((r) => child.once("exit", r));
      // Let it get some writes in (poll the file), then kill it without warning.
      const t0 = Date.now();
      let seen = 0;
      while (Date.now() - t0 < 20_000 && child.exitCode === null) {
        try {
          seen = JSON.parse(readFileSync(join(dir, "state.json"), "utf8")).state.version;
        } catch {}
        if (seen >= (round + 1) * 20) break;
        await new Promise((r) => setTimeout(r, 5));
      }
      child.kill("SIGKILL");
      await exited;
      expect(stderr).toBe("");
      const s = new FileStore(dir); // the dead writer's lock is stale: taken over
      await s.open();
      const v = s.current()!.state.version;
      expect(v).toBeGreaterThanOrEqual(seen);
      expect(s.current()!.state.keys[0]!.name).toBe(`k${v}`);
      await s.close();
      expect(readdirSync(dir).filter((n) => n.includes(".tmp-"))).toEqual([]);
    }
  });
});
