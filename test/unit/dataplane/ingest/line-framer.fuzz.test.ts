/**
 * Property runs of the ingest stage's framing and validation (bounded: a few
 * seconds in all).
 *
 * Framer: whatever the bytes and wherever TCP cuts them, every line (split on
 * `\n` only, a final unterminated line included) comes out exactly once, in
 * order, either inside a valid segment or as one reject, with the verdict the
 * validator gives that line alone; segments hold whole lines and are never
 * written to after they are handed out.
 *
 * Validator: agrees with a reference model written here from the documented
 * rules (graphite-protocol.md §1, the comments of line-validator.ts): UTF-8,
 * Python's str.strip()/split() whitespace, three fields, no ASCII control
 * character in the name, Python float() numbers (ASCII digits), NaN values
 * rejected, a finite timestamp, int(ts) == -1 meaning now.
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  DEFAULT_MAX_LINE_LENGTH,
  type FrameHandler,
  LineFramer,
} from "../../../../dataplane/ingest/line-framer.ts";
import {
  FAST_OK,
  RejectReason,
  validateFast,
  validateSlow,
} from "../../../../dataplane/ingest/line-validator.ts";

const NL = 0x0a;
const NOW = 1_700_000_000;

// The framer asks Date.now() for the time that replaces a `-1` timestamp: pin
// it, so that a run crossing a second boundary cannot tell chunkings apart.
beforeAll(() => {
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(NOW * 1000 + 250);
});
afterAll(() => {
  vi.useRealTimers();
});

// ---------------------------------------------------------------------------
// Reference model of one line's verdict

/** Python 3's str.isspace() characters: what str.strip() and str.split() take as whitespace. */
const PY_WHITESPACE = new Set(
  [
    [0x09, 0x0d],
    [0x1c, 0x20],
    [0x85, 0x85],
    [0xa0, 0xa0],
    [0x1680, 0x1680],
    [0x2000, 0x200a],
    [0x2028, 0x2029],
    [0x202f, 0x202f],
    [0x205f, 0x205f],
    [0x3000, 0x3000],
  ].flatMap(([lo, hi]) =>
    Array.from({ length: hi! - lo! + 1 }, (_, i) => String.fromCodePoint(lo! + i)),
  ),
);

const isAsciiDigit = (c: string | undefined): boolean => c !== undefined && c >= "0" && c <= "9";

/**
 * Python's float() of one field, or undefined where it raises ValueError:
 * [sign] (inf | infinity | nan, any case) or [sign] (digits [. [digits]] | . digits)
 * [(e|E) [sign] digits], digits possibly with single underscores between them
 * (PEP 515). Python also takes non-ASCII decimal digits (float("١") is 1.0);
 * polymur does not, and neither does this model.
 */
function pyFloat(s: string): number | undefined {
  let i = 0;
  const negative = s[0] === "-";
  if (s[0] === "+" || s[0] === "-") i = 1;
  const word = s.slice(i).toLowerCase();
  if (word === "inf" || word === "infinity") return negative ? -Infinity : Infinity;
  if (word === "nan") return Number.NaN;
  const digitsFrom = (j: number): number => {
    if (!isAsciiDigit(s[j])) return j;
    j++;
    for (;;) {
      if (isAsciiDigit(s[j])) j++;
      else if (s[j] === "_" && isAsciiDigit(s[j + 1])) j += 2;
      else return j;
    }
  };
  let j = digitsFrom(i);
  let sawDigits = j > i;
  if (s[j] === ".") {
    const k = digitsFrom(j + 1);
    sawDigits ||= k > j + 1;
    j = k;
  }
  if (!sawDigits) return undefined;
  if (s[j] === "e" || s[j] === "E") {
    let k = j + 1;
    if (s[k] === "+" || s[k] === "-") k++;
    const e = digitsFrom(k);
    if (e === k) return undefined;
    j = e;
  }
  if (j !== s.length) return undefined;
  return Number(s.replaceAll("_", ""));
}

type Verdict =
  | { ok: true; line: string; rewritten: boolean; now: boolean }
  | { ok: false; reason: RejectReason };

// Python's bytes.decode("utf-8") keeps a leading BOM (only "utf-8-sig" drops it).
const pyUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** What carbon does with the line, in polymur's words (reject reasons, "now" rewrite). */
function referenceVerdict(bytes: Uint8Array, nowSec: number): Verdict {
  let text: string;
  try {
    text = pyUtf8.decode(bytes);
  } catch {
    return { ok: false, reason: RejectReason.BadUtf8 };
  }
  const chars = [...text];
  const fields: string[] = [];
  let field = "";
  for (const ch of chars) {
    if (!PY_WHITESPACE.has(ch)) {
      field += ch;
    } else if (field !== "") {
      fields.push(field);
      field = "";
    }
  }
  if (field !== "") fields.push(field);
  if (fields.length === 0) return { ok: false, reason: RejectReason.Empty };
  if (fields.length !== 3) return { ok: false, reason: RejectReason.FieldCount };
  const [name, value, ts] = fields as [string, string, string];
  const control = [...name].some((ch) => {
    const c = ch.codePointAt(0)!;
    return c <= 0x08 || (c >= 0x0e && c <= 0x1b) || c === 0x7f;
  });
  if (control) return { ok: false, reason: RejectReason.BadName };
  const v = pyFloat(value);
  if (v === undefined) return { ok: false, reason: RejectReason.BadValue };
  if (Number.isNaN(v)) return { ok: false, reason: RejectReason.NanValue };
  const t = pyFloat(ts);
  // NaN and ±inf: int() raises in carbon; so does a number too large for a double (inf).
  if (t === undefined || !Number.isFinite(t))
    return { ok: false, reason: RejectReason.BadTimestamp };
  if (Math.trunc(t) === -1) {
    return { ok: true, line: `${name} ${value} ${nowSec}`, rewritten: true, now: true };
  }
  let from = 0;
  let to = chars.length;
  while (PY_WHITESPACE.has(chars[from]!)) from++;
  while (PY_WHITESPACE.has(chars[to - 1]!)) to--;
  const stripped = chars.slice(from, to).join("");
  return { ok: true, line: stripped, rewritten: stripped !== text, now: false };
}

// ---------------------------------------------------------------------------
// Generators: near-valid lines (no `\n`), then whole streams

const sign = fc.constantFrom("", "", "+", "-");
const digits = fc
  .array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 9 })), { minLength: 1, maxLength: 5 })
  .map((ds) => ds.map(([underscore, d], i) => (i > 0 && underscore ? "_" : "") + d).join(""));
const decimal = fc
  .tuple(
    sign,
    fc.oneof(
      digits,
      digits.map((d) => `${d}.`),
      fc.tuple(digits, digits).map(([a, b]) => `${a}.${b}`),
      digits.map((d) => `.${d}`),
    ),
    fc.option(
      fc.tuple(fc.constantFrom("e", "E"), sign, digits).map((p) => p.join("")),
      { nil: "" },
    ),
  )
  .map((p) => p.join(""));
const special = fc
  .tuple(
    sign,
    fc.constantFrom("nan", "NaN", "inf", "Inf", "INFINITY", "infinity", "infinit", "nana"),
  )
  .map((p) => p.join(""));
const notQuite = fc.constantFrom(
  ...["1__0", "_1", "1_", "1_.5", "1._5", ".", "e5", "1e", "1e+", "0x10", "1,5", "true"],
  ...["١", "１", "1e400", "-1e400", "9".repeat(400), "--1", "+-1", "1.2.3", "−1"],
);
const number = fc.oneof(
  { weight: 6, arbitrary: decimal },
  { weight: 1, arbitrary: special },
  { weight: 2, arbitrary: notQuite },
);
const timestamp = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 2 ** 32 }).map(String) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      ...["-1", "-1.0", "-1.9", "-1.99999", "-2", "-0.5", "-1e0", "-10e-1", "-0", "-1_0"],
      ...["1e9", "1700000000.5", "1_700_000_000", "9".repeat(24), "9".repeat(25), "+1"],
    ),
  },
  { weight: 3, arbitrary: number },
);
const name = fc.oneof(
  { weight: 6, arbitrary: fc.stringMatching(/^[A-Za-z0-9_.;=~-]{1,12}$/) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      ...["ütf8.name", "名前.x", "emoji.😀", "\u{feff}a.b", "\u{feff}", "a\u200bb"],
      ...["a\0b", "a\x07b", "a\x7fb", "a\x1bb", "a\x80b", "a\x9fb", "\x0ea"],
    ),
  },
);
/** Mostly plain spaces; also tabs and the rest of Python's whitespace (but not `\n`). */
const blank = fc.oneof(
  { weight: 8, arbitrary: fc.constant(" ") },
  { weight: 2, arbitrary: fc.constant("\t") },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      ...["\v", "\f", "\r", "\x1c", "\x1f", "\x85", "\xa0", "\u1680", "\u2003", "\u2028"],
      ...["\u202f", "\u3000", "\u200b", "\u{feff}"], // the last two are not whitespace
    ),
  },
);
const gap = fc.array(blank, { minLength: 1, maxLength: 3 }).map((b) => b.join(""));
const pad = fc.oneof({ weight: 4, arbitrary: fc.constant("") }, { weight: 1, arbitrary: gap });

/** Byte sequences to splice in: invalid UTF-8, a surrogate, an overlong, NUL, CR, a BOM. */
const odd = fc.constantFrom(
  [0xff],
  [0xc3],
  [0x80],
  [0xed, 0xa0, 0x80],
  [0xc0, 0xaf],
  [0x00],
  [0x0d],
  [0xef, 0xbb, 0xbf],
);

/** A line without its newline: usually name value timestamp, sometimes one field short or over. */
const nearValidLine: fc.Arbitrary<Buffer> = fc
  .tuple(
    pad,
    fc.tuple(name, number, timestamp, fc.oneof(number, name)),
    fc.tuple(gap, gap, gap),
    fc.constantFrom(3, 3, 3, 3, 3, 2, 4),
    pad,
    fc.option(fc.tuple(fc.nat(), odd), { freq: 6, nil: undefined }),
  )
  .map(([lead, fields, gaps, count, trail, splice]) => {
    let text = lead + fields[0];
    for (let i = 1; i < count; i++) text += gaps[i - 1]! + fields[i]!;
    const bytes = Buffer.from(text + trail, "utf8");
    if (splice === undefined) return bytes;
    const at = splice[0] % (bytes.length + 1);
    return Buffer.concat([bytes.subarray(0, at), Buffer.from(splice[1]), bytes.subarray(at)]);
  });

/** One piece of a stream: mostly lines, also empty lines, arbitrary bytes (newlines too), long lines. */
const piece = fc.oneof(
  { weight: 6, arbitrary: nearValidLine },
  { weight: 1, arbitrary: fc.constant(Buffer.alloc(0)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u)) },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: 1, max: 150 })
      .map((n) => Buffer.from(`${"n".repeat(n)} 1 ${NOW}`)),
  },
);

const stream = fc
  .tuple(fc.array(piece, { maxLength: 25 }), fc.boolean())
  .map(([pieces, lastNewline]) => {
    const parts: Buffer[] = [];
    for (const p of pieces) parts.push(p, Buffer.from([NL]));
    if (!lastNewline && parts.length > 0) parts.pop();
    return Buffer.concat(parts);
  });

/** Where TCP cuts the stream (taken modulo its length + 1; repeats give empty chunks). */
const cuts = fc.array(fc.nat(), { maxLength: 10 });

// ---------------------------------------------------------------------------
// Running the framer

type Event =
  | { kind: "ok"; bytes: Buffer }
  | { kind: "reject"; reason: RejectReason; detail: string; sample: Buffer };

/** Frames `bytes` cut at `at`, then end(); checks each segment's shape as it arrives. */
function frame(bytes: Buffer, at: readonly number[], maxLineLength?: number): Event[] {
  const events: Event[] = [];
  const handedOut: Array<{ view: Buffer; copy: Buffer }> = [];
  const sink: FrameHandler = {
    segment(buf, start, end, lines) {
      expect(lines).toBeGreaterThan(0);
      expect(end).toBeGreaterThan(start);
      expect(buf[end - 1]).toBe(NL);
      const view = buf.subarray(start, end);
      handedOut.push({ view, copy: Buffer.from(view) });
      let n = 0;
      for (let s = 0; s < view.length; ) {
        const nl = view.indexOf(NL, s);
        events.push({ kind: "ok", bytes: Buffer.from(view.subarray(s, nl)) });
        n++;
        s = nl + 1;
      }
      expect(n).toBe(lines);
    },
    reject(reason, detail, line) {
      events.push({ kind: "reject", reason, detail, sample: Buffer.from(line) });
    },
  };
  const framer = new LineFramer(sink, maxLineLength === undefined ? {} : { maxLineLength });
  const max = maxLineLength ?? DEFAULT_MAX_LINE_LENGTH;
  const points = at.map((p) => p % (bytes.length + 1)).sort((a, b) => a - b);
  let from = 0;
  for (const to of [...points, bytes.length]) {
    // A fresh buffer per chunk, as a socket gives.
    framer.push(Buffer.from(bytes.subarray(from, to)));
    expect(framer.pendingBytes).toBeLessThanOrEqual(max);
    from = to;
  }
  framer.end();
  expect(framer.pendingBytes).toBe(0);
  // Zero copy is safe: nothing the sink was given changed afterwards.
  for (const h of handedOut) expect(h.view.equals(h.copy)).toBe(true);
  return events;
}

/** The stream's lines as the framer should see them: split on `\n`, a final unterminated one included. */
function linesOf(bytes: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  let s = 0;
  for (let nl = bytes.indexOf(NL); nl >= 0; nl = bytes.indexOf(NL, s)) {
    lines.push(bytes.subarray(s, nl));
    s = nl + 1;
  }
  if (s < bytes.length) lines.push(bytes.subarray(s));
  return lines;
}

/** Each line judged alone: too long, or the validator's verdict (fast path, else slow). */
function expectedFor(line: Buffer, max: number): string {
  if (line.length > max) return `reject:${RejectReason.TooLong}`;
  if (validateFast(line, 0, line.length) === FAST_OK) return `ok:${line.toString("hex")}`;
  const r = validateSlow(line, NOW);
  if (!r.ok) return `reject:${r.reason}`;
  const out = r.rewritten ? Buffer.from(r.line) : line;
  // A "now" rewrite that no longer fits is rejected as too long.
  if (out.length > max) return `reject:${RejectReason.TooLong}`;
  return `ok:${out.toString("hex")}`;
}

const shown = (e: Event): string =>
  e.kind === "ok" ? `ok:${e.bytes.toString("hex")}` : `reject:${e.reason}`;

/** Runs every framer property on one stream and one set of cuts. */
function checkStream(bytes: Buffer, at: readonly number[], maxLineLength?: number): void {
  const max = maxLineLength ?? DEFAULT_MAX_LINE_LENGTH;
  const lines = linesOf(bytes);
  const whole = frame(bytes, [], maxLineLength);
  const cut = frame(bytes, at, maxLineLength);

  // Each line exactly once, in order, with the verdict it gets alone.
  expect(whole.map(shown)).toEqual(lines.map((l) => expectedFor(l, max)));
  // The chunking changes nothing, details included.
  expect(cut.map(shown)).toEqual(whole.map(shown));
  expect(cut.map((e) => (e.kind === "reject" ? e.detail : ""))).toEqual(
    whole.map((e) => (e.kind === "reject" ? e.detail : "")),
  );
  expect(cut.length).toBe(lines.length);

  lines.forEach((line, i) => {
    const w = whole[i]!;
    const c = cut[i]!;
    if (w.kind === "reject" && c.kind === "reject") {
      // In one push the sample is the line's first 256 bytes.
      expect(w.sample.equals(line.subarray(0, 256))).toBe(true);
      // Cut, a prefix of them: all of them once more than the limit has arrived,
      // which is when the framer rejects a line it has not seen the end of.
      expect(c.sample.equals(line.subarray(0, c.sample.length))).toBe(true);
      expect(c.sample.length).toBeLessThanOrEqual(256);
      expect(c.sample.length).toBeGreaterThanOrEqual(Math.min(256, line.length, max + 1));
    } else if (c.kind === "ok") {
      // No valid line is longer than the limit, a "now" rewrite included.
      expect(c.bytes.length).toBeLessThanOrEqual(max);
      expect(c.bytes.includes(NL)).toBe(false);
    }
  });
}

// ---------------------------------------------------------------------------

describe("LineFramer (property runs)", () => {
  it("frames any stream, cut anywhere, into each line once with its own verdict", () => {
    fc.assert(
      fc.property(stream, cuts, fc.integer({ min: 1, max: 80 }), (bytes, at, max) => {
        checkStream(bytes, at, max);
      }),
      { numRuns: 500 },
    );
  });

  it("does the same at the default limit, with lines around 16 KiB and arbitrary bytes", () => {
    const big = fc
      .tuple(
        fc.integer({ min: DEFAULT_MAX_LINE_LENGTH - 40, max: DEFAULT_MAX_LINE_LENGTH + 40 }),
        fc.constantFrom(0x61, 0x00, 0x0d, 0xff, 0x20),
      )
      .map(([n, byte]) => {
        const tail = ` 1 ${NOW}`;
        const b = Buffer.alloc(Math.max(n, tail.length), byte);
        b.write(tail, b.length - tail.length);
        return b;
      });
    const hugeStream = fc
      .array(fc.oneof(big, nearValidLine, fc.uint8Array({ maxLength: 64 }).map(Buffer.from)), {
        maxLength: 6,
      })
      .map((ps) => Buffer.concat(ps.flatMap((p) => [p, Buffer.from([NL])])));
    fc.assert(
      fc.property(hugeStream, cuts, (bytes, at) => {
        checkStream(bytes, at);
      }),
      { numRuns: 40 },
    );
  });

  it("never throws on arbitrary bytes, fed one byte at a time or in any chunks", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 1, max: 40 }), (u, max) => {
        const bytes = Buffer.from(u);
        checkStream(
          bytes,
          Array.from({ length: bytes.length }, (_, i) => i),
          max,
        );
      }),
      { numRuns: 150 },
    );
  });

  // A line within maxLineLength whose timestamp means "now" (int(ts) == -1)
  // is forwarded with the current time in its place, up to 8 bytes longer:
  // when that no longer fits the limit (which carbon-cache enforces by
  // dropping the connection), the framer rejects it as too long.
  it("never emits a valid line longer than maxLineLength, even after a -1 timestamp", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 30 }),
        fc.constantFrom("-1", "-1.0", "-1.5"),
        fc.integer({ min: 0, max: 5 }),
        (n, ts, slack) => {
          const line = `${"a".repeat(n)} 1 ${ts}`;
          const max = line.length + slack;
          for (const e of frame(Buffer.from(`${line}\n`), [], max)) {
            if (e.kind === "ok") expect(e.bytes.length).toBeLessThanOrEqual(max);
          }
        },
      ),
      { numRuns: 50 },
    );
  });
});

describe("validateFast / validateSlow (property runs)", () => {
  const lineOrBytes = fc.oneof(
    { weight: 5, arbitrary: nearValidLine },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u)) },
  );

  it("validateSlow agrees with the reference model on near-valid lines and arbitrary bytes", () => {
    fc.assert(
      fc.property(lineOrBytes, (bytes) => {
        const want = referenceVerdict(bytes, NOW);
        const got = validateSlow(bytes, NOW);
        if (want.ok) {
          expect(got).toEqual({ ok: true, line: want.line, rewritten: want.rewritten });
        } else {
          expect(got.ok).toBe(false);
          if (!got.ok) expect(got.reason).toBe(want.reason);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it("the fast path accepts only lines the model accepts as they are", () => {
    fc.assert(
      fc.property(lineOrBytes, (bytes) => {
        if (validateFast(bytes, 0, bytes.length) !== FAST_OK) return;
        const want = referenceVerdict(bytes, NOW);
        expect(want).toEqual({
          ok: true,
          line: bytes.toString("latin1"),
          rewritten: false,
          now: false,
        });
      }),
      { numRuns: 3000 },
    );
  });

  it("a valid line that needs no rewrite is forwarded byte for byte", () => {
    fc.assert(
      fc.property(lineOrBytes, (bytes) => {
        const r = validateSlow(bytes, NOW);
        if (r.ok && !r.rewritten) expect(Buffer.from(r.line, "utf8").equals(bytes)).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });

  it("agrees with the model on these lines found by the runs above", () => {
    for (const text of ["\u{feff} 1 2", "\u{feff}a.b 1 -1", "\u{feff}a.b 1 2 ", "\u{feff}"]) {
      const bytes = Buffer.from(text, "utf8");
      const want = referenceVerdict(bytes, NOW);
      const got = validateSlow(bytes, NOW);
      expect(got.ok ? `ok:${got.line}` : `reject:${got.reason}`, JSON.stringify(text)).toBe(
        want.ok ? `ok:${want.line}` : `reject:${want.reason}`,
      );
    }
  });
});
