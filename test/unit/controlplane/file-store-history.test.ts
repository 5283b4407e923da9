import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { addKey, type ControlState, EMPTY_STATE } from "../../../controlplane/control-state.ts";
import { updateState } from "../../../controlplane/control-store.ts";
import { FileStore } from "../../../controlplane/file-store.ts";
import type { ChangeRecord } from "../../../controlplane/state-history.ts";

// The file store's history: one file per version kept, beside state.json, in real
// directories under the system's temp dir.

const dirs: string[] = [];
const stores: FileStore[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), "polymur-fs-history-"));
  dirs.push(d);
  return d;
}
async function open(dir: string, historyVersions?: number): Promise<FileStore> {
  const s = new FileStore(dir, historyVersions === undefined ? {} : { historyVersions });
  await s.open();
  stores.push(s);
  return s;
}
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const key = (name: string) => ({ name, digest: `sha256:${name}`, createdAtMs: 1, rotatedAtMs: 0 });
const created = (name: string) => (): ChangeRecord => ({
  kind: "key create",
  scopes: [{ all: true }],
  subject: name,
  actor: "tester@host",
  replica: "r1",
  atMs: 1_700_000_000_000,
});
const addKeyKept = (s: FileStore, name: string): Promise<ControlState> =>
  updateState(s, (st) => addKey(st, key(name)), created(name));
const files = (dir: string): string[] => readdirSync(join(dir, "history")).sort();

describe("FileStore history", () => {
  it("keeps every version written with a record, newest first, each with its whole state", async () => {
    const dir = tmp();
    const s = await open(dir);
    expect(s.historyVersions).toBe(100);
    expect(await s.listHistory()).toEqual([]);
    for (const n of ["a", "b", "c"]) await addKeyKept(s, n);
    const h = await s.listHistory();
    expect(h.map((e) => [e.version, e.subject])).toEqual([
      [3, "c"],
      [2, "b"],
      [1, "a"],
    ]);
    expect(h[0]).toMatchObject({ kind: "key create", actor: "tester@host", replica: "r1" });
    const v2 = await s.getVersion(2);
    expect(v2?.state.keys.map((k) => k.name)).toEqual(["a", "b"]);
    expect(v2?.state.version).toBe(2);
    expect(await s.getVersion(4)).toBeUndefined();
    expect(await s.getVersion(0)).toBeUndefined();
    // A write without a record (a test, a tool) is not kept.
    await updateState(s, (st) => addKey(st, key("d")));
    expect((await s.listHistory()).map((e) => e.version)).toEqual([3, 2, 1]);
  });

  it("keeps the last historyVersions versions, on disk too, and after a restart", async () => {
    const dir = tmp();
    let s = await open(dir, 3);
    for (const n of ["a", "b", "c", "d", "e"]) await addKeyKept(s, n);
    expect((await s.listHistory()).map((e) => e.version)).toEqual([5, 4, 3]);
    expect(files(dir)).toEqual([
      "00000000000000000003.json",
      "00000000000000000004.json",
      "00000000000000000005.json",
    ]);
    expect(await s.getVersion(2)).toBeUndefined();
    await s.close();
    stores.splice(stores.indexOf(s), 1);
    // Fewer kept after a restart: the oldest go at open.
    s = await open(dir, 2);
    expect((await s.listHistory()).map((e) => e.version)).toEqual([5, 4]);
    expect(files(dir)).toHaveLength(2);
    expect((await s.getVersion(4))?.state.keys.map((k) => k.name)).toEqual(["a", "b", "c", "d"]);
  });

  it("drops at open a version the state never reached (a crash between the two writes)", async () => {
    const dir = tmp();
    let s = await open(dir);
    await addKeyKept(s, "a");
    await s.close();
    stores.splice(stores.indexOf(s), 1);
    // As a writer killed after the record's rename and before the state's leaves it.
    writeFileSync(
      join(dir, "history", "00000000000000000002.json"),
      JSON.stringify({
        format: "polymur-control-history/1",
        version: 2,
        kind: "key create",
        scopes: [{ all: true }],
        subject: "b",
        actor: "",
        replica: "r1",
        atMs: 1,
        state: { ...EMPTY_STATE, version: 2, keys: [key("a"), key("b")] },
      }),
    );
    writeFileSync(join(dir, "history", "00000000000000000001.json.tmp-1-1"), "{");
    s = await open(dir);
    expect((await s.listHistory()).map((e) => e.version)).toEqual([1]);
    expect(files(dir)).toEqual(["00000000000000000001.json"]);
    // The next write takes version 2, with its own record.
    await addKeyKept(s, "c");
    expect((await s.getVersion(2))?.state.keys.map((k) => k.name)).toEqual(["a", "c"]);
  });

  it("a state written before history was kept gets a baseline record at open", async () => {
    const dir = tmp();
    let s = await open(dir);
    await updateState(s, (st) => addKey(st, key("a")));
    await updateState(s, (st) => addKey(st, key("b")));
    rmSync(join(dir, "history"), { recursive: true });
    await s.close();
    stores.splice(stores.indexOf(s), 1);
    s = await open(dir);
    const h = await s.listHistory();
    expect(h).toHaveLength(1);
    expect(h[0]).toMatchObject({ version: 2, kind: "baseline", actor: "" });
    expect((await s.getVersion(2))?.state.keys.map((k) => k.name)).toEqual(["a", "b"]);
  });

  it("a damaged record is left out; the rest of the history stands", async () => {
    const dir = tmp();
    let s = await open(dir);
    for (const n of ["a", "b"]) await addKeyKept(s, n);
    await s.close();
    stores.splice(stores.indexOf(s), 1);
    writeFileSync(join(dir, "history", "00000000000000000001.json"), "{ not json");
    s = await open(dir);
    expect((await s.listHistory()).map((e) => e.version)).toEqual([2]);
    expect(await s.getVersion(1)).toBeUndefined();
  });

  it("removeNodes removes the records picked, and only those", async () => {
    const s = await open(tmp());
    const sub = (nodeId: string, lastSeenMs: number) => ({
      nodeId,
      group: "web",
      role: "relay",
      hostname: "h",
      appliedVersion: 0,
      replica: "r1",
      streamId: `s-${nodeId}`,
      open: false,
      sinceMs: 0,
      lastSeenMs,
    });
    await s.putSubscription(sub("old", 1));
    await s.putSubscription(sub("new", 1000));
    const removed = await s.removeNodes((r) => (r.subscription?.lastSeenMs ?? 0) < 10);
    expect(removed.map((r) => r.nodeId)).toEqual(["old"]);
    expect((await s.listNodes()).map((r) => r.nodeId)).toEqual(["new"]);
  });
});
