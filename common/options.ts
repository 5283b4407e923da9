import { readFileSync } from "node:fs";
import { ErrorCode, PolymurError, UsageError } from "./errors.ts";
import { closestName, unknownOptionText } from "./option-suggest.ts";

/**
 * Declarative command-line options shared by every polymur role: each option
 * is a flag (`--name value`, `--name=value`, and the Go polymur's single-dash
 * `-name=value` / `-name value`), a `POLYMUR_NAME` environment variable, and a
 * `name = value` line in a config file. Precedence: flag > environment >
 * config file > default. The same table prints `--help` and the docs.
 */
export type OptionType = "string" | "int" | "bool" | "bytes" | "seconds";

export interface OptionSpec {
  readonly name: string;
  readonly type: OptionType;
  readonly default: string;
  readonly help: string;
  /** Applied by SIGHUP (re-reading the config file) without a restart. */
  readonly reloadable?: boolean;
  /** Value names for enumerations; checked. */
  readonly choices?: readonly string[];
  /**
   * Older spellings of the flag, still accepted on the command line; each use
   * adds a one-line deprecation note (ParsedArgv.notes).
   */
  readonly aliases?: readonly string[];
}

/**
 * A flag of the Go polymur that polymur has no option of that name for (its
 * equivalents are aliases on the OptionSpec): accepted with a note saying
 * what polymur does instead (`ignore`), or refused naming what to use
 * (`refuse`). Either way a Go polymur command line gets an answer, not
 * "unknown option".
 */
export interface LegacyFlag {
  readonly name: string;
  /** Go's int and string flags take a value; its bool flags do not. */
  readonly takesValue: boolean;
  readonly action: "ignore" | "refuse";
  /** What polymur does instead, or what to use. */
  readonly advice: string;
}

/** Who is parsing: named in messages, and the Go polymur flags that command answers. */
export interface ParseContext {
  /** `polymur relay`, as the user typed it. */
  readonly command: string;
  readonly legacy?: readonly LegacyFlag[];
}

export type RawOptions = Map<string, string>;

export interface ParsedArgv {
  flags: RawOptions;
  positional: string[];
  /** One-line notes for stderr: deprecated spellings used, Go polymur flags ignored. */
  notes: string[];
}

const BOOL_WORDS = new Set(["true", "false", "yes", "no", "on", "off", "1", "0"]);

export function envName(option: string): string {
  return `POLYMUR_${option.toUpperCase().replaceAll("-", "_")}`;
}

const fail = (msg: string): never => {
  throw new PolymurError(ErrorCode.Config, msg);
};

/**
 * Where each resolved value came from, as messages name it: `--name` (a flag
 * or the default), `POLYMUR_NAME` (the environment), `file:line: name` (a
 * config file). Kept beside the maps so RawOptions stays a plain Map.
 */
const SOURCES = new WeakMap<RawOptions, Map<string, string>>();

/** How a message names option `name` of `o`: the flag, the variable or the file line it came from. */
export function optionLabel(o: RawOptions, name: string): string {
  return SOURCES.get(o)?.get(name) ?? `--${name}`;
}

/** A copy of `o` whose values keep their sources (for callers that override some). */
export function copyOptions(o: RawOptions): RawOptions {
  const out: RawOptions = new Map(o);
  const sources = SOURCES.get(o);
  if (sources !== undefined) SOURCES.set(out, new Map(sources));
  return out;
}

/**
 * Parses argv into raw strings per option plus positional arguments. Flags
 * are `--name value`, `--name=value`, and the Go polymur's `-name=value` /
 * `-name value`. An unknown flag, or one without its value, is a UsageError
 * naming it (with the closest valid name when one is close).
 */
export function parseArgv(
  specs: readonly OptionSpec[],
  argv: readonly string[],
  context: ParseContext = { command: "polymur" },
): ParsedArgv {
  const byName = new Map<string, OptionSpec>();
  const aliasOf = new Map<string, string>();
  for (const s of specs) {
    byName.set(s.name, s);
    for (const a of s.aliases ?? []) aliasOf.set(a, s.name);
  }
  const legacy = new Map((context.legacy ?? []).map((l) => [l.name, l]));
  const flags: RawOptions = new Map();
  const positional: string[] = [];
  const notes: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      positional.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const flag = eq < 0 ? arg : arg.slice(0, arg.indexOf("="));
    let name = eq < 0 ? body : body.slice(0, eq);
    let value: string | undefined = eq < 0 ? undefined : body.slice(eq + 1);
    let negated = false;
    const old = legacy.get(name);
    if (old !== undefined && !byName.has(name)) {
      if (old.action === "refuse") {
        throw new UsageError(
          `${flag} is a Go polymur option that polymur does not have: ${old.advice}`,
        );
      }
      if (old.takesValue && value === undefined) {
        if (argv[i + 1] === undefined) throw new UsageError(`option ${flag} needs a value`);
        value = argv[++i];
      }
      notes.push(`${flag} (a Go polymur option) is ignored: ${old.advice}`);
      continue;
    }
    const canonical = aliasOf.get(name);
    if (canonical !== undefined && !byName.has(name)) {
      notes.push(`${flag} is deprecated: use --${canonical}`);
      name = canonical;
    }
    if (!byName.has(name) && name.startsWith("no-") && byName.get(name.slice(3))?.type === "bool") {
      name = name.slice(3);
      negated = true;
    }
    const spec = byName.get(name);
    if (spec === undefined) {
      throw new UsageError(
        unknownOptionText(
          flag,
          name,
          byName.keys(),
          `${context.command} --help`,
          Object.fromEntries(aliasOf),
        ),
      );
    }
    if (spec.type === "bool") {
      // `--flag`, `--flag=false`, and `--flag false` (as polymurctl hash takes it).
      const next = argv[i + 1]?.toLowerCase();
      if (value === undefined && !negated && next !== undefined && BOOL_WORDS.has(next)) {
        value = next;
        i++;
      }
      if (value === undefined) value = negated ? "false" : "true";
    } else if (value === undefined) {
      const next = argv[i + 1];
      // `--listen-addr --hash x`: the next flag is not this one's value.
      if (next === undefined || next.startsWith("--")) {
        throw new UsageError(`option --${name} needs a value`);
      }
      value = next;
      i++;
    }
    flags.set(name, value);
  }
  return { flags, positional, notes };
}

/** Reads `name = value` lines; `#` starts a comment; names as the long flags. */
export function parseConfigFile(specs: readonly OptionSpec[], path: string): RawOptions {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    return fail(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  const known = new Set(specs.map((s) => s.name));
  const out: RawOptions = new Map();
  const sources = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, n) => {
    const line = raw.replace(/(^|\s)#.*$/, "").trim();
    if (line === "") return;
    const eq = line.indexOf("=");
    if (eq < 0) fail(`${path}:${n + 1}: expected "name = value"`);
    const name = line.slice(0, eq).trim();
    if (!known.has(name)) {
      const close = closestName(name, known);
      fail(
        `${path}:${n + 1}: unknown option "${name}"${close === undefined ? "" : `; did you mean "${close}"?`}`,
      );
    }
    out.set(name, line.slice(eq + 1).trim());
    sources.set(name, `${path}:${n + 1}: ${name}`);
  });
  SOURCES.set(out, sources);
  return out;
}

/** Merges the sources: flag > environment > file > default; records where each value came from. */
export function resolveOptions(
  specs: readonly OptionSpec[],
  flags: RawOptions,
  env: NodeJS.ProcessEnv,
  file: RawOptions,
): RawOptions {
  const out: RawOptions = new Map();
  const sources = new Map<string, string>();
  const fileSources = SOURCES.get(file);
  for (const s of specs) {
    const fromFlag = flags.get(s.name);
    const fromEnv = env[envName(s.name)];
    const fromFile = file.get(s.name);
    let v = s.default;
    let label = `--${s.name}`;
    if (fromFlag !== undefined) v = fromFlag;
    else if (fromEnv !== undefined) [v, label] = [fromEnv, envName(s.name)];
    else if (fromFile !== undefined) [v, label] = [fromFile, fileSources?.get(s.name) ?? label];
    sources.set(s.name, label);
    if (s.choices !== undefined && v !== "" && !s.choices.includes(v)) {
      fail(`${label} must be one of ${s.choices.join(", ")}; got "${v}"`);
    }
    out.set(s.name, v);
  }
  SOURCES.set(out, sources);
  return out;
}

export function getString(o: RawOptions, name: string): string {
  return o.get(name) ?? "";
}

export function getInt(o: RawOptions, name: string): number {
  const v = getString(o, name);
  if (!/^-?\d+$/.test(v)) fail(`${optionLabel(o, name)} must be a whole number; got "${v}"`);
  return Number(v);
}

export function getBool(o: RawOptions, name: string): boolean {
  const v = getString(o, name).toLowerCase();
  if (["true", "1", "yes", "on"].includes(v)) return true;
  if (["false", "0", "no", "off", ""].includes(v)) return false;
  return fail(`${optionLabel(o, name)} must be true or false; got "${v}"`);
}

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/** `65536`, `64KiB`, `128MiB`, `1GiB` (binary units whichever spelling). */
export function getBytes(o: RawOptions, name: string): number {
  return bytesValue(getString(o, name), optionLabel(o, name));
}

/** A size (`65536`, `64KiB`, `128MiB`); a bad one is an error naming `label` (the option, as optionLabel names it). */
export function bytesValue(v: string, label: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(v);
  const unit = m === null ? undefined : UNITS[m[2]!.toLowerCase()];
  if (m === null || unit === undefined) {
    return fail(`${label} must be a size such as 65536, 64KiB or 128MiB; got "${v}"`);
  }
  return Math.floor(Number(m[1]) * unit);
}

/**
 * A byte count as a flag default, in the largest binary unit that divides it
 * (134217728 → "128MiB"), as --help shows it and getBytes reads it back.
 */
export function bytesText(bytes: number): string {
  const units = [
    ["GiB", 1024 ** 3],
    ["MiB", 1024 ** 2],
    ["KiB", 1024],
  ] as const;
  for (const [unit, size] of units) {
    if (bytes > 0 && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return String(bytes);
}

/** Seconds, possibly fractional (`0.5`), or with a unit: `500ms`, `30s`, `5m`. */
export function getSeconds(o: RawOptions, name: string): number {
  const v = getString(o, name);
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(v);
  if (m === null)
    return fail(
      `${optionLabel(o, name)} must be a duration such as 30, 30s, 500ms or 5m; got "${v}"`,
    );
  const scale = { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2] ?? "s"]!;
  return Number(m[1]) * scale;
}

/**
 * The text of the file an option names (a certificate, a key); a file that
 * cannot be read is a configuration error naming the option.
 */
export function readOptionFile(path: string, option: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new PolymurError(ErrorCode.Config, `--${option} ${path}: ${(err as Error).message}`);
  }
}

/** `host:port` (IPv6 in brackets); an empty string is null (off). */
export function getAddress(o: RawOptions, name: string): { host: string; port: number } | null {
  const v = getString(o, name);
  if (v === "") return null;
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(v);
  if (m === null) {
    return fail(`${optionLabel(o, name)} must be host:port (or [ipv6]:port); got "${v}"`);
  }
  const port = Number(m[3]);
  if (port > 65535) fail(`${optionLabel(o, name)}: port ${port} is out of range`);
  const host = m[1] ?? m[2] ?? "";
  return { host: host === "" ? "0.0.0.0" : host, port };
}

/** An address as a flag default, `host:port` (IPv6 in brackets), as getAddress reads it back. */
export function addressText(a: { readonly host: string; readonly port: number }): string {
  return a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

export function formatHelp(title: string, specs: readonly OptionSpec[]): string {
  const lines = [
    title,
    "",
    "Options (flag, or POLYMUR_<NAME> env var, or `name = value` in --config):",
  ];
  for (const s of specs) {
    const def = s.default === "" ? "" : ` (default ${s.default})`;
    const reload = s.reloadable ? " [reloadable]" : "";
    const value = s.choices !== undefined ? s.choices.join("|") : s.type;
    lines.push(`  --${s.name}${s.type === "bool" ? "" : ` <${value}>`}`);
    lines.push(`      ${s.help}${def}${reload}`);
  }
  return lines.join("\n");
}
