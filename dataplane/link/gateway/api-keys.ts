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
 * Parses a keys file: one key per line, `name secret` or `name sha256:<hex>`;
 * `#` comments and blank lines are ignored. Secrets are hashed here and not
 * kept. The same name may appear twice (two secrets while rotating).
 */
export function parseKeysFile(text: string, path: string): ApiKey[] {
  const keys: ApiKey[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/(^|\s)#.*$/, "").trim();
    if (line === "") return;
    const where = `${path}:${i + 1}`;
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
    keys.push({ name, digest });
  });
  return keys;
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

  names(): string[] {
    return [...new Set(this.#keys.map((k) => k.name))].sort();
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
