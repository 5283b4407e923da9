import { PY_DECIMAL, PY_SPECIAL, PY_STRIP } from "../../common/python-float.ts";
import type { Value } from "./pickle-value.ts";

/**
 * From a decoded pickle list to datapoints, as carbon reads its items:
 * `(metric, (value, timestamp)) = raw` then `float()` on both numbers. Outer
 * and inner may be tuples or lists of two; the path a str (UTF-8) or bytes
 * (latin1); timestamp and value an int, a float, a bool or a str/bytes that
 * Python's float() accepts. Other items are skipped and counted.
 */

/** One datapoint of a pickle message: its fields as Graphite plaintext text. */
export interface PicklePoint {
  name: string;
  value: string;
  timestamp: string;
}

/** The points of a message, or why the whole message was refused. */
export type PickleDecodeResult =
  | { ok: true; points: PicklePoint[]; skipped: number }
  | { ok: false; error: string };

export function toPoints(items: Value[]): PickleDecodeResult {
  const points: PicklePoint[] = [];
  let skipped = 0;
  for (const raw of items) {
    const p = toPoint(raw);
    if (p === null) skipped++;
    else points.push(p);
  }
  return { ok: true, points, skipped };
}

function pair(v: Value): Value[] | null {
  return (v.k === "list" || v.k === "tuple") && v.items.length === 2 ? v.items : null;
}

function toPoint(raw: Value): PicklePoint | null {
  const outer = pair(raw);
  if (outer === null) return null;
  const [path, data] = outer as [Value, Value];
  if (path.k !== "str" && path.k !== "bytes") return null;
  const inner = pair(data);
  if (inner === null) return null;
  const timestamp = numberText(inner[0]!);
  const value = numberText(inner[1]!);
  if (timestamp === null || value === null) return null;
  return { name: path.s, value, timestamp };
}

/** The number as plaintext text, or null when carbon's float() would fail. */
function numberText(v: Value): string | null {
  switch (v.k) {
    case "int":
      return String(v.v);
    case "float":
      return floatText(v.v);
    case "bool":
      return v.v ? "1" : "0";
    case "str":
    case "bytes": {
      // float() on bytes strips only ASCII whitespace; close enough to keep one rule.
      if (v.s.length > 4096) return null;
      const t = v.s.replace(PY_STRIP, "");
      return PY_DECIMAL.test(t) || PY_SPECIAL.test(t) ? t : null;
    }
    default:
      return null;
  }
}

/** A float's text that reads back as the same float; NaN and infinities as Python spells them. */
export function floatText(x: number): string {
  if (Number.isNaN(x)) return "nan";
  if (x === Number.POSITIVE_INFINITY) return "inf";
  if (x === Number.NEGATIVE_INFINITY) return "-inf";
  if (Object.is(x, -0)) return "-0.0";
  return String(x);
}
