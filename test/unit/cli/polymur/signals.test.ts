import { describe, expect, it } from "vitest";
import { EXIT, exitStatus, undeliveredTotal } from "../../../../cli/polymur/signals.ts";

describe("exit status at shutdown", () => {
  it("is 0 on a clean drain, 3 when datapoints were left undelivered", () => {
    expect(exitStatus(undefined)).toBe(EXIT.ok);
    expect(exitStatus({ undelivered: 0 })).toBe(0);
    expect(exitStatus({ undelivered: 1 })).toBe(3);
    expect(EXIT).toEqual({ ok: 0, failed: 1, usage: 2, undelivered: 3 });
  });

  it("sums what each destination was left with", () => {
    expect(undeliveredTotal({})).toBe(0);
    expect(undeliveredTotal({ "a:1": 1234, "b:2": 6 })).toBe(1240);
  });
});
