import { describe, expect, it } from "vitest";
import {
  ListenerCounters,
  mergeListeners,
} from "../../../../dataplane/ingest/listener-counters.ts";
import { tlsRejectReason } from "../../../../dataplane/ingest/listener-tls.ts";

describe("listener counters", () => {
  it("a TLS listener counts refusals by reason; others have none", () => {
    const t = new ListenerCounters("plaintext", "plaintext", "tls");
    const u = new ListenerCounters("udp", "plaintext", "udp");
    t.tlsRejectedBy!.not_tls++;
    expect(t.stats().tlsRejectedBy).toMatchObject({ not_tls: 1, handshake_failed: 0 });
    expect(u.stats().tlsRejectedBy).toBeNull();
  });

  it("sums a process group's listeners by name, each once", () => {
    const a = new ListenerCounters("plaintext", "plaintext", "tls");
    const b = new ListenerCounters("plaintext", "plaintext", "tls");
    const pickle = new ListenerCounters("pickle", "pickle", "tls");
    a.accepted = 5;
    a.connections = 1;
    b.accepted = 7;
    b.rejected = 2;
    a.tlsRejectedBy!.throttled = 3;
    b.tlsRejectedBy!.throttled = 4;
    pickle.accepted = 9;
    const first = a.stats();
    const merged = mergeListeners([first, b.stats(), pickle.stats()]);
    expect(merged.map((l) => l.name)).toEqual(["plaintext", "pickle"]);
    expect(merged[0]).toMatchObject({ accepted: 12, rejected: 2, connections: 1 });
    expect(merged[0]!.tlsRejectedBy!.throttled).toBe(7);
    // The inputs are left as they were.
    expect(first.accepted).toBe(5);
    expect(first.tlsRejectedBy!.throttled).toBe(3);
  });
});

describe("tlsRejectReason", () => {
  it.each([
    ["ERR_TLS_HANDSHAKE_TIMEOUT", "handshake_timeout"],
    ["ERR_SSL_WRONG_VERSION_NUMBER", "not_tls"],
    ["ERR_SSL_HTTP_REQUEST", "not_tls"],
    ["ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE", "client_cert_refused"],
    ["ECONNRESET", "handshake_failed"],
    ["ERR_SSL_TLSV1_ALERT_UNKNOWN_CA", "handshake_failed"],
  ])("%s is %s", (code, reason) => {
    expect(tlsRejectReason(Object.assign(new Error(code), { code }))).toBe(reason);
  });
});
