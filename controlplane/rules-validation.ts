import { ErrorCode, PolymurError } from "../common/errors.ts";
import { type RulesConfig, RulesError } from "../dataplane/route/rules/rules-config.ts";
import { type IncludeReader, parseRules } from "../dataplane/route/rules/rules-parser.ts";
import { RulesProgram } from "../dataplane/route/rules/rules-program.ts";
import type { Rules } from "../gen/polymur/control/v1/control_pb.ts";
import type { RulesFile } from "./control-state.ts";

/**
 * Checks a relay.conf sent to the control plane (`polymurctl rules set`) as a
 * node would load it, so that a file a node could not run never reaches one:
 * parsed (rules-parser.ts) and compiled (rules-program.ts), refused with
 * POLYMUR_ERR_RULES and `file:line:column: what is wrong`, the file named as
 * the caller sent it.
 */

/**
 * The largest rules file the control plane takes. The whole state is one
 * document, which the Consul store writes in one transaction of at most
 * 512 KiB, base64 included (Consul's `txn_max_req_len`; CONSUL_TXN_MAX_BYTES
 * in consul-store.ts): some 383 KiB of the state's JSON. A file of this size
 * of plain text is some 260 KiB of it (JSON escapes its newlines), which
 * leaves room for the rest of the state. What no per-file limit can promise
 * (two such files, or bytes JSON must escape: non-ASCII bytes take two, other
 * control characters six), the Consul store checks before it writes: a
 * change that would make the state larger than one transaction is refused
 * (POLYMUR_ERR_CONFIG, naming the sizes), and nothing is written.
 */
export const RULES_MAX_BYTES = 256 * 1024;

/** The name positions use when the caller sent none. */
export const DEFAULT_RULES_FILE_NAME = "relay.conf";

const invalid = (message: string): never => {
  throw new PolymurError(ErrorCode.Config, message);
};

/** The rules of a SetRules call, checked; throws POLYMUR_ERR_RULES (or _CONFIG for the envelope). */
export function rulesFromProto(r: Rules | undefined): RulesFile {
  const fileName = checkRulesFileName(r?.fileName ?? "");
  const content = r?.content ?? new Uint8Array();
  if (content.byteLength > RULES_MAX_BYTES) {
    invalid(
      `rules file ${fileName} is ${content.byteLength} bytes; the control plane takes at most ${RULES_MAX_BYTES}`,
    );
  }
  // One char per byte: expressions match the bytes of metric names, whatever their encoding.
  const text = Buffer.from(content.buffer, content.byteOffset, content.byteLength).toString(
    "latin1",
  );
  checkRulesText(text, fileName);
  return { text, fileName };
}

function checkRulesFileName(name: string): string {
  if (name === "") return DEFAULT_RULES_FILE_NAME;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (name.length > 1024 || /[\u0000-\u001f\u007f]/.test(name)) {
    invalid("rules.file_name must be 1-1024 characters without control characters");
  }
  return name;
}

/**
 * Parses and compiles one relay.conf as the control plane holds it: one
 * file, so `include` (which would name files on the operator's machine) and
 * `listen` (a node listens where its own flags say) are refused at their
 * position, and so are `file` clusters (they would have every node write to a
 * path the control plane chose). Throws RulesError; returns the parsed rules.
 */
export function checkRulesText(text: string, fileName: string): RulesConfig {
  const config = parseRules(text, fileName, NO_INCLUDE);
  const listen = config.listen[0];
  if (listen !== undefined) {
    throw new RulesError(
      listen.pos,
      "listen blocks are per node: a managed node listens where its own --listen-addr and --udp-addr say; remove the listen block from the rules you give the control plane",
    );
  }
  const file = config.clusters.find((c) => c.type === "file");
  if (file !== undefined) {
    throw new RulesError(
      file.pos,
      `file cluster "${file.name}": file clusters are per node (the control plane would have every node write that path); give the node its own --rules instead`,
    );
  }
  RulesProgram.compile(config);
  return config;
}

/**
 * `include` names files on the machine the file was written for, which the
 * control plane cannot (and must not) read: refused at the include's path,
 * before anything is read.
 */
const NO_INCLUDE: IncludeReader = {
  expand(path: string): never {
    throw new Error(
      `include ${JSON.stringify(path)}: the control plane holds one file and cannot read the files an include names; put their contents in place of the include (inline them) and set that file`,
    );
  },
  key: (path: string) => path,
  read(path: string): never {
    throw new Error(`include ${JSON.stringify(path)}: not read at the control plane`);
  },
};
