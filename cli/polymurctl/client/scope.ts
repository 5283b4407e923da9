import { UsageError } from "../../../common/errors.ts";

/** Where a change applies: every node (`--all`) or one group (`--group NAME`). */
export type ScopeArg = { case: "all"; value: true } | { case: "group"; value: string };

/** `--all` or `--group NAME`: exactly one when `required`. */
export function scopeArg(
  values: { all?: boolean; group?: string },
  required: boolean,
): ScopeArg | undefined {
  if (values.all === true && values.group !== undefined) {
    throw new UsageError("give --all or --group NAME, not both");
  }
  if (values.all === true) return { case: "all", value: true };
  if (values.group !== undefined) return { case: "group", value: values.group };
  if (required) throw new UsageError("say where: --all (every node) or --group NAME");
  return undefined;
}

/** A protobuf Scope for people: "all" or "group NAME". */
export function scopeText(
  s: { target: { case?: string | undefined; value?: unknown } } | undefined,
): string {
  const t = s?.target;
  return t?.case === "group" ? `group ${String(t.value)}` : "all";
}

/** A protobuf Scope for --json: `{ all: true }` or `{ group: NAME }`. */
export function scopeJson(
  s: { target: { case?: string | undefined; value?: unknown } } | undefined,
): { all: true } | { group: string } {
  const t = s?.target;
  return t?.case === "group" ? { group: String(t.value) } : { all: true };
}
