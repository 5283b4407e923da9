import { createHash, timingSafeEqual } from "node:crypto";
import { EventEmitter } from "node:events";
import { ErrorCode, PolymurError } from "../../../common/errors.ts";

/** An API key as a gateway holds it: its name and the sha256 of its secret. */
export interface ApiKey {
  readonly name: string;
  /** sha256 of the secret, 32 bytes. */
  readonly digest: Buffer;
}

/**
 * Key names become metric prefixes (--key-prefix), so they must be a safe
 * Graphite path: letters, digits, `_`, `-`, and dots between elements.
 */
const NAME = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

export function sha256(secret: string): Buffer {
  return createHash("sha256").update(secret, "utf8").digest();
}

/** Parses `sha256:<64 hex>`; throws otherwise. */
export function parseDigest(text: string, where: string): Buffer {
  const m = /^sha256:([0-9a-fA-F]{64})$/.exec(text);
  if (m === null) {
    throw new PolymurError(ErrorCode.Config, `${where}: digest must be sha256:<64 hex digits>`);
  }
  return Buffer.from(m[1]!, "hex");
}

export function checkKeyName(name: string, where: string): void {
  if (!NAME.test(name)) {
    throw new PolymurError(
      ErrorCode.Config,
      `${where}: key name "${name}" must be letters, digits, _ and -, with dots between parts (it can prefix metric names)`,
    );
  }
}

/**
 * The line that says a keys file has no keys on purpose. A re-read file with
 * no keys and without it keeps the keys in force: an empty file is far more
 * often one caught between truncate and write (`: > keys`, an editor, a
 * config tool) than an operator revoking every key. A comment, so a gateway
 * that does not know it reads the same thing: no keys.
 */
export const NO_KEYS_LINE = "# polymur: no keys";
const NO_KEYS = /^#\s*polymur:\s*no\s+keys\s*$/i;

/** What is wrong with a keys file (labels of the reload-failure counter). */
export type KeysFileProblem = "invalid" | "incomplete";

/** A keys file that does not parse: where (1-based line) and why. */
export class KeysFileError extends PolymurError {
  readonly problem: KeysFileProblem;
  readonly line: number;

  constructor(problem: KeysFileProblem, line: number, message: string) {
    super(ErrorCode.Config, message);
    this.name = "KeysFileError";
    this.problem = problem;
    this.line = line;
  }
}

/** A parsed keys file. */
export interface KeysFileContents {
  keys: ApiKey[];
  /** It has the NO_KEYS_LINE: no keys is what the operator means. */
  noKeys: boolean;
  /**
   * Its last line has no newline: a file cut off in the middle of a line
   * (caught while being written) looks like this, and may still parse.
   */
  unterminated: boolean;
  /** Lines, the last one counted even without a newline. */
  lines: number;
}

/**
 * Parses a keys file: one key per line, `name secret` or `name sha256:<hex>`;
 * `#` comments and blank lines are ignored. Secrets are hashed here and not
 * kept. The same name may appear twice (two secrets while rotating). Throws
 * KeysFileError (file:line and what is wrong) at the first bad line; a bad
 * last line without a newline is "incomplete" (cut off), others "invalid".
 */
export function readKeysText(text: string, path: string): KeysFileContents {
  const keys: ApiKey[] = [];
  const raws = text.split(/\r?\n/);
  const unterminated = text !== "" && !text.endsWith("\n");
  if (!unterminated) raws.pop(); // the empty string after the last newline
  let noKeys = false;
  raws.forEach((raw, i) => {
    if (NO_KEYS.test(raw.trim())) noKeys = true;
    const line = raw.replace(/(^|\s)#.*$/, "").trim();
    if (line === "") return;
    try {
      keys.push(parseKeyLine(line, `${path}:${i + 1}`));
    } catch (err) {
      const cut = unterminated && i === raws.length - 1;
      throw new KeysFileError(
        cut ? "incomplete" : "invalid",
        i + 1,
        cut
          ? `${(err as Error).message}; the line has no newline at the end: the file may be half-written`
          : (err as Error).message,
      );
    }
  });
  return { keys, noKeys, unterminated, lines: raws.length };
}

/** The keys of a keys file (see readKeysText); throws KeysFileError. */
export function parseKeysFile(text: string, path: string): ApiKey[] {
  return readKeysText(text, path).keys;
}

function parseKeyLine(line: string, where: string): ApiKey {
  const parts = line.split(/\s+/);
  if (parts.length !== 2) {
    throw new PolymurError(
      ErrorCode.Config,
      `${where}: expected "name secret" or "name sha256:<hex>"`,
    );
  }
  const [name, value] = parts as [string, string];
  checkKeyName(name, where);
  const digest = value.startsWith("sha256:") ? parseDigest(value, where) : sha256(value);
  return { name, digest };
}

/** Key names a new set of keys adds, removes, or gives other secrets. */
export interface KeyChanges {
  added: string[];
  removed: string[];
  /** Names kept with a different set of secrets (rotated, or a second secret added or dropped). */
  rotated: string[];
}

export interface ApiKeyRingEvents {
  /** The digests (hex) of the keys that are gone. */
  changed: [removed: Set<string>];
}

/**
 * The keys a gateway accepts. Replaced wholesale (keys file reloaded, new
 * control-plane snapshot); "changed" fires with the set of digests (hex)
 * that are gone, so streams authenticated with them can be cut.
 */
export class ApiKeyRing extends EventEmitter<ApiKeyRingEvents> {
  #keys: readonly ApiKey[] = [];

  get size(): number {
    return this.#keys.length;
  }

  /**
   * The keys as the ring holds them: names and digests, never a secret (the
   * primary pushes them to its worker processes).
   */
  list(): readonly ApiKey[] {
    return this.#keys;
  }

  names(): string[] {
    return [...new Set(this.#keys.map((k) => k.name))].sort();
  }

  /** What replacing the keys with `next` would change, by name (never a secret or digest). */
  changes(next: readonly ApiKey[]): KeyChanges {
    const digests = (keys: readonly ApiKey[]): Map<string, Set<string>> => {
      const m = new Map<string, Set<string>>();
      for (const k of keys) {
        const set = m.get(k.name) ?? new Set<string>();
        set.add(k.digest.toString("hex"));
        m.set(k.name, set);
      }
      return m;
    };
    const before = digests(this.#keys);
    const after = digests(next);
    const same = (a: Set<string>, b: Set<string>): boolean =>
      a.size === b.size && [...a].every((d) => b.has(d));
    const sorted = (xs: Iterable<string>): string[] => [...xs].sort();
    return {
      added: sorted([...after.keys()].filter((n) => !before.has(n))),
      removed: sorted([...before.keys()].filter((n) => !after.has(n))),
      rotated: sorted(
        [...after].filter(([n, d]) => before.has(n) && !same(before.get(n)!, d)).map(([n]) => n),
      ),
    };
  }

  replace(keys: readonly ApiKey[]): void {
    const next = new Set(keys.map((k) => `${k.name}\0${k.digest.toString("hex")}`));
    const removed = new Set<string>();
    for (const k of this.#keys) {
      const id = `${k.name}\0${k.digest.toString("hex")}`;
      if (!next.has(id)) removed.add(id);
    }
    this.#keys = keys;
    this.emit("changed", removed);
  }

  /** Whether a key (by name and digest) is still accepted. */
  has(key: ApiKey): boolean {
    return this.#keys.some((k) => k.name === key.name && k.digest.equals(key.digest));
  }

  /**
   * The key whose secret this is, or null. The secret's digest is compared
   * with every key in constant time (no early exit), so timing tells nothing
   * about which digest bytes matched.
   */
  authenticate(secret: string): ApiKey | null {
    if (secret === "") return null;
    const d = sha256(secret);
    let found: ApiKey | null = null;
    for (const k of this.#keys) {
      if (timingSafeEqual(d, k.digest) && found === null) found = k;
    }
    return found;
  }
}

/** The identity of a key for bookkeeping (never the secret). */
export function keyId(k: ApiKey): string {
  return `${k.name}\0${k.digest.toString("hex")}`;
}
