import { describe, expect, it } from "vitest";
import {
  BATCH_REJECT_REASONS,
  type ClientCounters,
  GatewayCounters,
  KEYS_RELOAD_FAILURES,
  retireGatewayCounters,
} from "../../../../../dataplane/link/gateway/gateway-counters.ts";
import { parseExposition } from "../../../../fixtures/prometheus-exposition.ts";

const clients = (c: GatewayCounters): Record<string, ClientCounters> =>
  c.json()["clients"] as Record<string, ClientCounters>;
const keys = (c: GatewayCounters): Record<string, Record<string, number>> =>
  c.json()["keys"] as Record<string, Record<string, number>>;

describe("GatewayCounters", () => {
  it("counts queued batches per key and per client", () => {
    const c = new GatewayCounters();
    c.queued("a", "10.0.0.1", 10, 1, 100, 400);
    c.queued("a", "10.0.0.2", 5, 0, 50, 200);
    c.queued("b", "10.0.0.1", 3, 2, 30, 90);
    expect(keys(c)).toEqual({
      a: {
        streams: 0,
        batches: 2,
        lines: 15,
        rejectedLines: 1,
        payloadBytes: 150,
        rawBytes: 600,
        duplicates: 0,
      },
      b: {
        streams: 0,
        batches: 1,
        lines: 3,
        rejectedLines: 2,
        payloadBytes: 30,
        rawBytes: 90,
        duplicates: 0,
      },
    });
    const cl = clients(c);
    // A client is counted under the key it used last.
    expect(cl["10.0.0.1"]).toMatchObject({ key: "b", batches: 2, lines: 13, payloadBytes: 130 });
    expect(cl["10.0.0.2"]).toMatchObject({ key: "a", batches: 1, lines: 5, payloadBytes: 50 });
    expect(Number.isNaN(Date.parse(cl["10.0.0.1"]!.lastSeen))).toBe(false);
  });

  it("counts open streams per key, and their sum", () => {
    const c = new GatewayCounters();
    expect(c.openStreams()).toBe(0);
    c.streamOpened("a");
    c.streamOpened("a");
    c.streamOpened("b");
    expect(c.openStreams()).toBe(3);
    c.streamClosed("a");
    expect(c.openStreams()).toBe(2);
    expect(keys(c)["a"]?.["streams"]).toBe(1);
    expect(keys(c)["b"]?.["streams"]).toBe(1);
  });

  it("counts rejects by reason, and per client", () => {
    const c = new GatewayCounters();
    c.reject("a", "10.0.0.1", "corrupt");
    c.reject("a", "10.0.0.1", "corrupt");
    c.reject("b", "10.0.0.2", "bad_seq");
    expect(c.rejected).toEqual({
      too_large: 0,
      corrupt: 2,
      bad_compression: 0,
      truncated: 0,
      bad_seq: 1,
    });
    expect(Object.keys(c.rejected)).toEqual([...BATCH_REJECT_REASONS]);
    expect(clients(c)["10.0.0.1"]).toMatchObject({ key: "a", rejectedBatches: 2, batches: 0 });
    expect(clients(c)["10.0.0.2"]).toMatchObject({ key: "b", rejectedBatches: 1 });
    // A reject does not create the key's counters.
    expect(keys(c)).toEqual({});
  });

  it("counts duplicates per key, legacy requests per status", () => {
    const c = new GatewayCounters();
    c.duplicate("a");
    c.duplicate("a");
    c.legacy(200);
    c.legacy(200);
    c.legacy(413);
    expect(keys(c)["a"]?.["duplicates"]).toBe(2);
    expect(c.json()["legacyRequests"]).toEqual({ "200": 2, "413": 1 });
  });

  it("json(): every section, clients most recently seen first", () => {
    const c = new GatewayCounters();
    c.queued("a", "10.0.0.1", 1, 0, 1, 1);
    c.queued("a", "10.0.0.2", 1, 0, 1, 1);
    c.queued("a", "10.0.0.3", 1, 0, 1, 1);
    c.queued("a", "10.0.0.1", 1, 0, 1, 1); // seen again: most recent
    c.authFailures.stream = 2;
    c.streamsCut.key_revoked = 1;
    const j = c.json();
    expect(Object.keys(j)).toEqual([
      "keys",
      "rejectedBatches",
      "authFailures",
      "streamsCut",
      "streamsRefused",
      "proxyInstances",
      "keysReloads",
      "legacyRequests",
      "clients",
    ]);
    expect(Object.keys(clients(c))).toEqual(["10.0.0.1", "10.0.0.3", "10.0.0.2"]);
    expect(j["authFailures"]).toEqual({ stream: 2, legacy: 0 });
    expect(j["streamsCut"]).toEqual({ key_revoked: 1, shutdown: 0, unresponsive: 0, moved: 0 });
    expect(j["rejectedBatches"]).toEqual(c.rejected);
    // JSON-serialisable as /stats does.
    expect(JSON.parse(JSON.stringify(j))).toEqual(j);
  });

  it("counts refused streams, proxy instance changes, and keys file reloads by outcome", () => {
    const c = new GatewayCounters();
    c.streamsRefused.proxy_id_in_use += 2;
    c.proxyInstances.new++;
    c.proxyInstances.returning++;
    c.streamsCut.unresponsive++;
    c.keysReloaded();
    c.keysReloadFailed("empty");
    c.keysReloadFailed("incomplete");
    c.keysReloadFailed("incomplete");
    const j = c.json();
    expect(j["streamsRefused"]).toEqual({ proxy_id_in_use: 2 });
    expect(j["proxyInstances"]).toEqual({ new: 1, returning: 1 });
    expect(j["keysReloads"]).toEqual({
      applied: 1,
      failed: { unreadable: 0, invalid: 0, incomplete: 2, empty: 1, unsettled: 0 },
    });
    expect(Object.keys(c.keysReloads.failed)).toEqual([...KEYS_RELOAD_FAILURES]);
  });

  it("keeps at most 1024 clients, evicting the least recently seen", () => {
    const c = new GatewayCounters();
    for (let i = 0; i < 1024; i++) c.queued("a", `c${i}`, 1, 0, 1, 1);
    c.queued("a", "c0", 1, 0, 1, 1); // c0 is now the most recent; c1 the oldest
    c.queued("a", "new", 1, 0, 1, 1);
    const cl = clients(c);
    expect(Object.keys(cl)).toHaveLength(1024);
    expect(cl["c1"]).toBeUndefined();
    expect(cl["c0"]?.batches).toBe(2);
    expect(Object.keys(cl).slice(0, 2)).toEqual(["new", "c0"]);
    // Keys are not bounded by clients: every batch is still counted.
    expect(keys(c)["a"]?.["batches"]).toBe(1026);
  });
});

describe("GatewayCounters.prometheus", () => {
  const FAMILIES = {
    polymur_gateway_streams: "gauge",
    polymur_gateway_batches_total: "counter",
    polymur_gateway_datapoints_total: "counter",
    polymur_gateway_rejected_datapoints_total: "counter",
    polymur_gateway_payload_bytes_total: "counter",
    polymur_gateway_raw_bytes_total: "counter",
    polymur_gateway_duplicate_batches_total: "counter",
    polymur_gateway_rejected_batches_total: "counter",
    polymur_gateway_auth_failures_total: "counter",
    polymur_gateway_streams_cut_total: "counter",
    polymur_gateway_streams_refused_total: "counter",
    polymur_gateway_proxy_instance_changes_total: "counter",
    polymur_gateway_keys_reloads_total: "counter",
    polymur_gateway_keys_reload_failures_total: "counter",
    polymur_gateway_legacy_requests_total: "counter",
  };

  it("is well-formed with nothing counted: every family has HELP and TYPE", () => {
    const f = parseExposition(new GatewayCounters().prometheus());
    expect(Object.fromEntries([...f].map(([n, x]) => [n, x.type]))).toEqual(FAMILIES);
    for (const x of f.values()) expect(x.help.length).toBeGreaterThan(0);
    // Per-key families are empty; the fixed label sets are always there.
    expect(f.get("polymur_gateway_batches_total")?.samples).toEqual([]);
    expect(f.get("polymur_gateway_rejected_batches_total")?.samples).toEqual(
      BATCH_REJECT_REASONS.map((r) => ({ labels: { reason: r }, value: 0 })),
    );
    expect(f.get("polymur_gateway_auth_failures_total")?.samples).toEqual([
      { labels: { protocol: "stream" }, value: 0 },
      { labels: { protocol: "legacy" }, value: 0 },
    ]);
    expect(f.get("polymur_gateway_streams_cut_total")?.samples).toEqual([
      { labels: { reason: "key_revoked" }, value: 0 },
      { labels: { reason: "shutdown" }, value: 0 },
      { labels: { reason: "unresponsive" }, value: 0 },
      { labels: { reason: "moved" }, value: 0 },
    ]);
    expect(f.get("polymur_gateway_streams_refused_total")?.samples).toEqual([
      { labels: { reason: "proxy_id_in_use" }, value: 0 },
    ]);
    expect(f.get("polymur_gateway_proxy_instance_changes_total")?.samples).toEqual([
      { labels: { change: "new" }, value: 0 },
      { labels: { change: "returning" }, value: 0 },
    ]);
    expect(f.get("polymur_gateway_keys_reloads_total")?.samples).toEqual([
      { labels: {}, value: 0 },
    ]);
    expect(f.get("polymur_gateway_keys_reload_failures_total")?.samples).toEqual(
      KEYS_RELOAD_FAILURES.map((r) => ({ labels: { reason: r }, value: 0 })),
    );
    expect(f.get("polymur_gateway_legacy_requests_total")?.samples).toEqual([]);
  });

  it("has one sample per key, per reason, per status, with the counted values", () => {
    const c = new GatewayCounters();
    c.streamOpened("a");
    c.queued("a", "10.0.0.1", 10, 1, 100, 400);
    c.queued("b", "10.0.0.1", 3, 0, 30, 90);
    c.duplicate("b");
    c.reject("a", "10.0.0.1", "too_large");
    c.authFailures.legacy = 4;
    c.streamsCut.shutdown = 2;
    c.streamsCut.unresponsive = 1;
    c.streamsRefused.proxy_id_in_use = 3;
    c.proxyInstances.returning = 1;
    c.keysReloaded();
    c.keysReloadFailed("unsettled");
    c.legacy(200);
    c.legacy(503);
    const text = c.prometheus();
    const f = parseExposition(text);
    const v = (name: string): Array<[string, number]> =>
      (f.get(name)?.samples ?? []).map((s) => [Object.values(s.labels).join(","), s.value]);
    expect(v("polymur_gateway_streams")).toEqual([
      ["a", 1],
      ["b", 0],
    ]);
    expect(v("polymur_gateway_batches_total")).toEqual([
      ["a", 1],
      ["b", 1],
    ]);
    expect(v("polymur_gateway_datapoints_total")).toEqual([
      ["a", 10],
      ["b", 3],
    ]);
    expect(v("polymur_gateway_rejected_datapoints_total")).toEqual([
      ["a", 1],
      ["b", 0],
    ]);
    expect(v("polymur_gateway_payload_bytes_total")).toEqual([
      ["a", 100],
      ["b", 30],
    ]);
    expect(v("polymur_gateway_raw_bytes_total")).toEqual([
      ["a", 400],
      ["b", 90],
    ]);
    expect(v("polymur_gateway_duplicate_batches_total")).toEqual([
      ["a", 0],
      ["b", 1],
    ]);
    expect(v("polymur_gateway_rejected_batches_total")).toContainEqual(["too_large", 1]);
    expect(v("polymur_gateway_auth_failures_total")).toEqual([
      ["stream", 0],
      ["legacy", 4],
    ]);
    expect(v("polymur_gateway_streams_cut_total")).toEqual([
      ["key_revoked", 0],
      ["shutdown", 2],
      ["unresponsive", 1],
      ["moved", 0],
    ]);
    expect(v("polymur_gateway_streams_refused_total")).toEqual([["proxy_id_in_use", 3]]);
    expect(v("polymur_gateway_proxy_instance_changes_total")).toEqual([
      ["new", 0],
      ["returning", 1],
    ]);
    expect(v("polymur_gateway_keys_reloads_total")).toEqual([["", 1]]);
    expect(v("polymur_gateway_keys_reload_failures_total")).toContainEqual(["unsettled", 1]);
    expect(v("polymur_gateway_legacy_requests_total")).toEqual([
      ["200", 1],
      ["503", 1],
    ]);
    expect(text).toContain('polymur_gateway_batches_total{key="a"} 1\n');
    expect(text).toContain('polymur_gateway_legacy_requests_total{status="503"} 1\n');
  });

  it("escapes backslash, double quote and newline in label values", () => {
    const c = new GatewayCounters();
    const name = 'we"ird\\key\nname';
    c.queued(name, "10.0.0.1", 7, 0, 1, 1);
    const text = c.prometheus();
    expect(text).toContain('polymur_gateway_datapoints_total{key="we\\"ird\\\\key\\nname"} 7\n');
    const f = parseExposition(text);
    expect(f.get("polymur_gateway_datapoints_total")?.samples).toEqual([
      { labels: { key: name }, value: 7 },
    ]);
  });
});

describe("GatewayCounters.sum (the primary's view of its processes)", () => {
  it("adds every counter; a client seen by two processes is one row, last seen at the latest", () => {
    const a = new GatewayCounters();
    const b = new GatewayCounters();
    a.streamOpened("k");
    b.streamOpened("k");
    b.streamOpened("k");
    a.queued("k", "10.0.0.1", 10, 1, 100, 400);
    b.queued("k", "10.0.0.1", 5, 0, 50, 200);
    b.queued("j", "10.0.0.2", 3, 0, 30, 90);
    a.duplicate("k");
    b.reject("k", "10.0.0.1", "corrupt");
    a.streamsCut.moved++;
    b.streamsCut.key_revoked += 2;
    a.legacy(200);
    b.legacy(200);
    b.legacy(401);
    // A snapshot is plain data (what crosses the IPC channel) and survives a structured clone.
    const s = GatewayCounters.sum([structuredClone(a.snapshot()), structuredClone(b.snapshot())]);
    expect(s.openStreams()).toBe(3);
    expect(keys(s)["k"]).toMatchObject({ streams: 3, batches: 2, lines: 15, duplicates: 1 });
    expect(keys(s)["j"]).toMatchObject({ streams: 0, batches: 1, lines: 3 });
    expect(clients(s)["10.0.0.1"]).toMatchObject({ batches: 2, lines: 15, rejectedBatches: 1 });
    expect(s.rejected.corrupt).toBe(1);
    expect(s.streamsCut).toEqual({ key_revoked: 2, shutdown: 0, unresponsive: 0, moved: 1 });
    expect(s.json()["legacyRequests"]).toEqual({ 200: 2, 401: 1 });
    // The parts are unchanged.
    expect(a.openStreams()).toBe(1);
    expect(keys(a)["k"]!["lines"]).toBe(10);
  });

  it("a retired (dead) process's counters stay in the sum, its streams closed", () => {
    const a = new GatewayCounters();
    a.streamOpened("k");
    a.queued("k", "10.0.0.1", 10, 0, 100, 400);
    const snap = a.snapshot();
    retireGatewayCounters(snap);
    const s = GatewayCounters.sum([snap]);
    expect(s.openStreams()).toBe(0);
    expect(keys(s)["k"]!["lines"]).toBe(10);
  });
});
