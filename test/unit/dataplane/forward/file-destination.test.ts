import { mkdirSync, mkdtempSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Destination, type DestinationOptions } from "../../../../dataplane/forward/destination.ts";
import type { DestinationStats } from "../../../../dataplane/forward/destination-stats.ts";
import {
  FILE_IP_UNKNOWN_SOURCE,
  fileTransport,
  prefixLines,
} from "../../../../dataplane/forward/file-destination.ts";
import { fixedWidthLines as lines } from "../../../fixtures/destination-harness.ts";
import { until } from "../../../fixtures/until.ts";

const open: Destination[] = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});

const tempDir = (): string => mkdtempSync(join(tmpdir(), "polymur-file-dest-"));

function fileDest(path: string, ip = false, options: DestinationOptions = {}): Destination {
  const d = new Destination(fileTransport(path, ip), {
    backoffMinMs: 20,
    backoffMaxMs: 100,
    ...options,
  });
  open.push(d);
  d.start();
  return d;
}

function balanced(s: DestinationStats): boolean {
  return s.routed === s.forwarded + s.queuedLines + s.dropped + s.undelivered + s.rerouted;
}

const fileLines = (path: string): string[] => {
  const text = readFileSync(path, "latin1");
  return text === "" ? [] : text.trimEnd().split("\n");
};
const text = (b: Buffer): string[] => String(b).trimEnd().split("\n");

describe("file destination", () => {
  it("appends every line, in order, after what the file held, and counts them forwarded", async () => {
    const path = join(tempDir(), "out.log");
    writeFileSync(path, "before 1 1700000000\n");
    const d = fileDest(path);
    expect(d.spec).toEqual({ id: `file:${path}`, spec: `file:${path}` });
    for (let i = 0; i < 50; i++) d.enqueue(lines(i * 100, 100), 100);
    await until("every line written", () => d.stats().forwarded === 5_000);
    expect(fileLines(path)).toEqual(["before 1 1700000000", ...text(lines(0, 5_000))]);
    expect(d.stats()).toMatchObject({ routed: 5_000, dropped: 0, queuedLines: 0, resent: 0 });
    expect(d.state).toBe("connected");
  });

  it("creates the file as carbon-c-relay does (0644 less the umask)", async () => {
    const path = join(tempDir(), "new.log");
    const d = fileDest(path);
    d.enqueue(lines(0, 1), 1);
    await until(() => d.stats().forwarded === 1);
    const umask = process.umask();
    expect(statSync(path).mode & 0o777).toBe(0o644 & ~umask);
  });

  it(`file ip: each line after "${FILE_IP_UNKNOWN_SOURCE} ", the sender's address being unknown`, async () => {
    const path = join(tempDir(), "ip.log");
    const d = fileDest(path, true);
    expect(d.spec.id).toBe(`file-ip:${path}`);
    d.enqueue(Buffer.from("a.b 1 1700000000\nc.d 2 1700000001\n"), 2);
    await until(() => d.stats().forwarded === 2);
    expect(fileLines(path)).toEqual(["(unknown) a.b 1 1700000000", "(unknown) c.d 2 1700000001"]);
  });

  it("a reload reopens the file: after logrotate moves it away, lines go to a new file at the path", async () => {
    const dir = tempDir();
    const path = join(dir, "rotated.log");
    const d = fileDest(path);
    d.enqueue(lines(0, 100), 100);
    await until(() => d.stats().forwarded === 100);
    renameSync(path, join(dir, "rotated.log.1"));
    // Still open: a line written now goes to the moved file.
    d.enqueue(lines(100, 10), 10);
    await until(() => d.stats().forwarded === 110);
    d.reconfigure({});
    d.enqueue(lines(110, 20), 20);
    await until(() => d.stats().forwarded === 130);
    expect(fileLines(join(dir, "rotated.log.1"))).toEqual(text(lines(0, 110)));
    expect(fileLines(path)).toEqual(text(lines(110, 20)));
    expect(d.stats()).toMatchObject({ failures: 0, connects: 1 });
  });

  it("a file that cannot be opened is retried after the backoff; the queue holds meanwhile", async () => {
    const dir = join(tempDir(), "not-yet");
    const path = join(dir, "out.log");
    const d = fileDest(path);
    d.enqueue(lines(0, 30), 30);
    await until("failed opens", () => d.stats().failures >= 2);
    expect(d.stats().lastError).toMatch(/ENOENT/);
    expect(d.stats()).toMatchObject({ routed: 30, queuedLines: 30, forwarded: 0 });
    mkdirSync(dir);
    await until("written once the directory is there", () => d.stats().forwarded === 30);
    expect(fileLines(path)).toEqual(text(lines(0, 30)));
    expect(balanced(d.stats())).toBe(true);
  });

  it("several destinations appending to one file (a relay's workers) keep every line whole", async () => {
    const path = join(tempDir(), "shared.log");
    const ds = [fileDest(path), fileDest(path), fileDest(path)];
    for (let i = 0; i < 30; i++) ds[i % 3]!.enqueue(lines(i * 1_000, 1_000), 1_000);
    await until(() => ds.every((d) => d.stats().forwarded === 10_000));
    expect(fileLines(path).sort()).toEqual(text(lines(0, 30_000)).sort());
  });

  it("drain writes what is queued, then closes; what comes later is dropped as closed", async () => {
    const path = join(tempDir(), "drain.log");
    const d = fileDest(path);
    d.enqueue(lines(0, 40), 40);
    expect(await d.drain(5_000)).toBe(0);
    expect(d.state).toBe("closed");
    expect(fileLines(path)).toEqual(text(lines(0, 40)));
    d.enqueue(lines(40, 2), 2);
    expect(d.stats()).toMatchObject({ routed: 42, forwarded: 40, dropped: 2, undelivered: 0 });
    expect(d.stats().droppedBy.closed).toBe(2);
  });

  it("drain of a file that cannot be opened counts the queue undelivered", async () => {
    const path = join(tempDir(), "missing", "out.log");
    const d = fileDest(path);
    d.enqueue(lines(0, 9), 9);
    await until(() => d.stats().failures >= 1);
    expect(await d.drain(100)).toBe(9);
    expect(d.stats()).toMatchObject({ routed: 9, undelivered: 9, forwarded: 0 });
    expect(balanced(d.stats())).toBe(true);
  });
});

describe("prefixLines", () => {
  it("puts the prefix before every line", () => {
    const p = Buffer.from("P ");
    expect(String(prefixLines(Buffer.from("a 1 2\nb 3 4\n"), p))).toBe("P a 1 2\nP b 3 4\n");
    expect(String(prefixLines(Buffer.from("x 1 2\n"), p))).toBe("P x 1 2\n");
    expect(prefixLines(Buffer.alloc(0), p).length).toBe(0);
  });
});
