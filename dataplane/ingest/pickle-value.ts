/**
 * The values a pickle message's opcodes build (pickle-decoder.ts): lists,
 * tuples, strings, bytes, numbers, booleans and None; nothing else can be
 * built, so nothing else can be executed.
 */

export type Container = { k: "list" | "tuple"; items: Value[]; depth: number };
export type Value =
  | Container
  | { k: "str"; s: string }
  | { k: "bytes"; s: string } // latin1: one char per byte
  | { k: "int"; v: number | bigint }
  | { k: "hugeint" } // beyond float range: float() raises OverflowError
  | { k: "float"; v: number }
  | { k: "bool"; v: boolean }
  | { k: "none" };

export const NONE: Value = { k: "none" };
export const TRUE: Value = { k: "bool", v: true };
export const FALSE: Value = { k: "bool", v: false };

export function depthOf(v: Value): number {
  return v.k === "list" || v.k === "tuple" ? v.depth : 0;
}

/** The Python type name of `v`, for errors. */
export function typeName(v: Value): string {
  switch (v.k) {
    case "hugeint":
      return "int";
    case "none":
      return "None";
    default:
      return v.k;
  }
}
