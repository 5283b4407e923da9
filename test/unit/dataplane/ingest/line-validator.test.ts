import { describe, expect, it } from "vitest";
import {
  FAST_OK,
  FAST_SLOW,
  RejectReason,
  validateFast,
  validateSlow,
} from "../../../../dataplane/ingest/line-validator.ts";

const NOW = 1_700_000_000;
const b = (s: string): Buffer => Buffer.from(s, "utf8");
const fast = (s: string): number => validateFast(b(s), 0, b(s).length);
const slow = (s: string) => validateSlow(b(s), NOW);

/** What polymur does with a line: the forwarded text, or the reject reason. */
function verdict(s: string): string {
  if (fast(s) === FAST_OK) return `ok:${s}`;
  const r = slow(s);
  return r.ok ? `ok:${r.line}` : `reject:${r.reason}`;
}

describe("validateFast / validateSlow (graphite-protocol.md §1 and §2)", () => {
  it("accepts the common shape on the fast path, byte for byte", () => {
    for (const line of [
      "a.b.c 1 1700000000",
      "servers.web042.cpu.cpu3.user 12.5 1700000000",
      "a 1.5e3 1700000000.5",
      "a -1 1700000000",
      "a .5 1700000000",
      "a 5. 1700000000",
      "a +5 1700000000",
      "a 1_000 1700000000",
      "a.b;tag=v;x=y 1 1700000000",
      "a\t1\t1700000000",
      "a  1   1700000000",
    ]) {
      expect(fast(line), line).toBe(FAST_OK);
    }
  });

  // Each row of the cross-implementation table (§2), with carbon's verdict.
  it.each([
    ["a.b 1", "reject:field_count"],
    ["a.b  1\t2", "ok:a.b  1\t2"],
    ["a.b nan 2", "reject:nan_value"],
    ["a.b NaN 2", "reject:nan_value"],
    ["a.b 1 -1", `ok:a.b 1 ${NOW}`],
    ["a.b 1 -1.0", `ok:a.b 1 ${NOW}`],
    ["a.b 1 -1.9", `ok:a.b 1 ${NOW}`],
    ["a.b 1 -2", "ok:a.b 1 -2"],
    ["a.b 1 -0.5", "ok:a.b 1 -0.5"],
    ["a.b 1 1.7e9", "ok:a.b 1 1.7e9"],
    ["", "reject:empty_line"],
    ["   ", "reject:empty_line"],
    ["a.b 1 2 3", "reject:field_count"],
    ["a.b", "reject:field_count"],
    ["a.b inf 2", "ok:a.b inf 2"],
    ["a.b -Infinity 2", "ok:a.b -Infinity 2"],
    ["a.b 1 nan", "reject:bad_timestamp"],
    ["a.b 1 inf", "reject:bad_timestamp"],
    ["a.b 1 1e999", "reject:bad_timestamp"],
    ["a.b 0x10 2", "reject:bad_value"],
    ["a.b 1,5 2", "reject:bad_value"],
    ["a.b true 2", "reject:bad_value"],
    ["a.b 1__0 2", "reject:bad_value"],
    ["a.b _1 2", "reject:bad_value"],
    ["a.b 1_ 2", "reject:bad_value"],
    ["a.b . 2", "reject:bad_value"],
    ["a.b 1e 2", "reject:bad_value"],
    ["a.b 1 x", "reject:bad_timestamp"],
    ["  a.b 1 2  ", "ok:a.b 1 2"],
    ["a.b 1 2\r", "ok:a.b 1 2"],
    ["a\u00a0b 1 2", "reject:field_count"],
    ["a\x1cb 1 2", "reject:field_count"],
    ["a\x00b 1 2", "reject:bad_name"],
    ["a\x01b 1 2", "reject:bad_name"],
    ["métrique.é 1 2", "ok:métrique.é 1 2"],
    ["a.b 1e-11 2", "ok:a.b 1e-11 2"],
    ["a.b 1.7976931348623157e308 2", "ok:a.b 1.7976931348623157e308 2"],
  ])("%j → %s", (line, expected) => {
    expect(verdict(line)).toBe(expected);
  });

  it("rejects invalid UTF-8 without throwing", () => {
    const line = Buffer.from([0x61, 0xff, 0x62, 0x20, 0x31, 0x20, 0x32]);
    expect(validateFast(line, 0, line.length)).toBe(FAST_SLOW);
    const r = validateSlow(line, NOW);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toBe(RejectReason.BadUtf8);
  });

  it("never passes on the fast path what the slow path would reject or rewrite", () => {
    // Random lines from a small alphabet that hits every branch of both paths.
    const alphabet = [
      "a",
      ".",
      " ",
      "\t",
      "1",
      "0",
      "-",
      "+",
      "e",
      "_",
      "n",
      "i",
      "f",
      "\r",
      ";",
      "=",
    ];
    let seed = 42;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let k = 0; k < 20000; k++) {
      let s = "";
      const len = 1 + rnd(14);
      for (let j = 0; j < len; j++) s += alphabet[rnd(alphabet.length)];
      if (fast(s) === FAST_OK) {
        const r = slow(s);
        expect(r.ok && !r.rewritten ? r.line : `slow:${JSON.stringify(r)}`, s).toBe(s);
      }
    }
  });
});
