import { readFileSync, realpathSync, statSync } from "node:fs";
import { ErrorCode, PolymurError } from "../../../common/errors.ts";
import type { RulesConfig } from "./rules-config.ts";
import { hasGlobMagic, posixGlob } from "./rules-glob.ts";
import { type IncludeReader, parseRules } from "./rules-parser.ts";

/**
 * relay.conf files on disk. As in carbon-c-relay, an `include` path is
 * relative to the working directory (not to the including file), and a path
 * with `*`, `?` or `[...]` is a glob whose matches are read in sorted order.
 * A glob that matches nothing is an error at the include (carbon-c-relay
 * 3.7.3 warns, then fails and crashes), and so is a file that is missing,
 * not a regular file, or already being read (an include cycle).
 */

const reason = (err: unknown): string => {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return "no such file";
  if (code === "EACCES") return "permission denied";
  return err instanceof Error ? err.message : String(err);
};

/** Fails unless `path` is a regular file (router.c: "cannot open non-regular file"). */
function regularFile(path: string): void {
  let isFile: boolean;
  try {
    isFile = statSync(path).isFile();
  } catch (err) {
    throw new Error(`cannot read ${JSON.stringify(path)}: ${reason(err)}`);
  }
  if (!isFile) throw new Error(`cannot read ${JSON.stringify(path)}: not a regular file`);
}

/** The file system as `include` sees it. */
export const fileIncludeReader: IncludeReader = {
  expand(path: string): readonly string[] {
    if (!hasGlobMagic(path)) {
      regularFile(path);
      return [path];
    }
    const files = posixGlob(path);
    if (files.length === 0) throw new Error(`no file matches ${JSON.stringify(path)}`);
    return files;
  },
  key(path: string): string {
    try {
      return realpathSync(path);
    } catch (err) {
      throw new Error(`cannot read ${JSON.stringify(path)}: ${reason(err)}`);
    }
  },
  read(path: string): string {
    regularFile(path);
    try {
      return readFileSync(path, "latin1");
    } catch (err) {
      throw new Error(`cannot read ${JSON.stringify(path)}: ${reason(err)}`);
    }
  },
};

/**
 * Reads a relay.conf and the files it includes. Throws RulesError
 * (`file:line:column: ...`) for what the files say, and PolymurError
 * (POLYMUR_ERR_RULES) when `path` itself cannot be read.
 */
export function loadRules(path: string): RulesConfig {
  let text: string;
  try {
    text = fileIncludeReader.read(path);
    fileIncludeReader.key(path);
  } catch (err) {
    throw new PolymurError(ErrorCode.Rules, err instanceof Error ? err.message : String(err));
  }
  return parseRules(text, path, fileIncludeReader);
}
