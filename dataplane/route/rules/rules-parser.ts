import { type RulesConfig, RulesError, type SourcePos } from "./rules-config.ts";
import { RulesLexer } from "./rules-lexer.ts";
import { parseAggregate, parseSendStatistics, parseStatistics } from "./rules-parse-aggregate.ts";
import { parseCluster } from "./rules-parse-cluster.ts";
import { at, createRulesState, ParseContext, type RulesState } from "./rules-parse-context.ts";
import { parseListen } from "./rules-parse-listen.ts";
import { parseMatch, parseRewrite } from "./rules-parse-match.ts";

/**
 * Reads carbon-c-relay 3.7.3's relay.conf (conffile.y, conffile.l, and the
 * checks of router.c) into a RulesConfig. Statements: cluster, match,
 * rewrite, aggregate, statistics, send statistics, listen, include. Each
 * error is a RulesError `file:line:column: what was expected / what is
 * wrong`; a file that fails is never half-returned. Expressions and
 * replacements are kept as written (rules-program.ts compiles them); an
 * expression that is exactly `*` matches every name, as in carbon-c-relay.
 * Features polymur cannot run (compressed or TLS transports, syslog members)
 * are refused where they are written.
 */

/** How `include` reaches files (rules-files.ts: the file system, paths relative to the working directory). */
export interface IncludeReader {
  /**
   * The files `include PATH` names, in the order to read them: the matches of
   * a glob (sorted), or PATH itself. Throws an Error saying why when there
   * are none (no file matches, no such file, not a regular file).
   */
  expand(path: string): readonly string[];
  /** A name unique to the file (its real path), to find include cycles. */
  key(path: string): string;
  /** The file's bytes as a latin1 string. */
  read(path: string): string;
}

const STATEMENTS =
  "cluster, match, rewrite, aggregate, statistics, send statistics, listen or include";

/**
 * Parses relay.conf text. `file` names it in positions; `include` resolves
 * `include` statements (without it, an `include` is an error).
 */
export function parseRules(text: string, file: string, include?: IncludeReader): RulesConfig {
  const state = createRulesState();
  state.files.push(file);
  const key = include === undefined ? file : include.key(file);
  parseFile(text, file, state, include, [key]);
  const st = state.statistics;
  return {
    files: state.files,
    clusters: state.clusters,
    rules: state.rules,
    statistics:
      st === null
        ? null
        : {
            intervalSec: st.intervalSec,
            resetCounters: st.resetCounters,
            prefix: st.prefix,
            sendTo: st.sendTo,
            stop: st.stop,
            pos: st.pos,
          },
    listen: state.listen,
  };
}

/** One file's statements, into `state`; `stack`: the keys of the files being read (this one last). */
function parseFile(
  text: string,
  file: string,
  state: RulesState,
  include: IncludeReader | undefined,
  stack: readonly string[],
): void {
  const ctx = new ParseContext(new RulesLexer(text, file), state);
  for (;;) {
    const kw = ctx.take();
    switch (kw.kind) {
      case "eof":
        return;
      case "cluster":
        parseCluster(ctx, kw);
        break;
      case "match":
        parseMatch(ctx, kw);
        break;
      case "rewrite":
        parseRewrite(ctx, kw);
        break;
      case "aggregate":
        parseAggregate(ctx, kw);
        break;
      case "statistics":
        parseStatistics(ctx, kw);
        break;
      case "send":
        parseSendStatistics(ctx, kw);
        break;
      case "listen":
        parseListen(ctx, kw);
        break;
      case "include":
        parseInclude(ctx, include, stack);
        break;
      default: {
        const found = kw.kind === "unexpected" ? `"${kw.word}"` : `"${kw.raw}"`;
        throw new RulesError(kw.pos, `expected a statement (${STATEMENTS}), found ${found}`);
      }
    }
  }
}

/**
 * `include PATH ;`: the files PATH names are read in place, sharing what is
 * defined so far. A file already being read (an include cycle) is an error.
 */
function parseInclude(
  ctx: ParseContext,
  include: IncludeReader | undefined,
  stack: readonly string[],
): void {
  const pathTok = ctx.expect("string", "a file name or glob", 'after "include"');
  ctx.expect(";", '";"', "after the include path");
  const pos = pathTok.pos;
  if (include === undefined)
    ctx.fail(pos, "include is not available here (the rules were not read from a file)");
  const files = io(pos, () => include.expand(pathTok.text));
  for (const f of files) {
    const key = io(pos, () => include.key(f));
    if (stack.includes(key)) {
      ctx.fail(pos, `include cycle: ${JSON.stringify(f)} is already being read`);
    }
    const text = io(pos, () => include.read(f));
    ctx.state.files.push(f);
    try {
      parseFile(text, f, ctx.state, include, [...stack, key]);
    } catch (err) {
      if (!(err instanceof RulesError)) throw err;
      throw new RulesError(err.pos, `${err.detail} (in a file included at ${at(pos)})`);
    }
  }
}

/** Runs a reader call; its failure is a RulesError at the include's path. */
function io<T>(pos: SourcePos, f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (err instanceof RulesError) throw err;
    throw new RulesError(pos, err instanceof Error ? err.message : String(err));
  }
}
