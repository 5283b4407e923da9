import { describe, expect, it } from "vitest";
import type { DestinationLink } from "../../../../dataplane/forward/destination-link.ts";
import { CLOSED, linkOf, socketOf } from "../../../../dataplane/forward/link-state.ts";

describe("link state", () => {
  const socket = {} as DestinationLink;

  it("finds the link and socket of a state, draining or not", () => {
    const connected = { kind: "connected", socket } as const;
    expect(linkOf(connected)).toBe(connected);
    expect(socketOf(connected)).toBe(socket);
    expect(socketOf({ kind: "draining", link: { kind: "connecting", socket } })).toBe(socket);
  });

  it("has no socket in backoff and no link once closed", () => {
    const backoff = { kind: "backoff", timer: null } as const;
    expect(linkOf({ kind: "draining", link: backoff })).toBe(backoff);
    expect(socketOf(backoff)).toBeNull();
    expect(linkOf(CLOSED)).toBeNull();
    expect(socketOf(CLOSED)).toBeNull();
  });
});
