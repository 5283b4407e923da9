import {
  type Cluster,
  type ListenBlock,
  type Rule,
  RulesError,
  type SourcePos,
  type Targets,
} from "./rules-config.ts";
import { describeToken, type RulesLexer, type Token, type TokenKind } from "./rules-lexer.ts";

/** A server as carbon-c-relay keeps it: one per address, shared by every cluster naming it. */
export interface ServerEntry {
  /** The host as first written (members naming the server later use it too). */
  readonly host: string;
  readonly instance: string | undefined;
  /** Where it was first named. */
  readonly pos: SourcePos;
}

/** A listener already opened, for carbon-c-relay's duplicate check. */
export interface ListenerEntry {
  readonly proto: "tcp" | "udp" | "unix";
  readonly port: number;
  /** tcp/udp: `4:any`, `6:any`, numeric addresses (rules-address numericAddress), or `n:` + host name; unix: the path. */
  readonly addresses: readonly string[];
  readonly pos: SourcePos;
}

/** Statistics as the statements so far have set them. */
export interface StatisticsState {
  intervalSec: number | null;
  resetCounters: boolean;
  prefix: string | null;
  sendTo: Targets | null;
  /** Where `send to` was given (once only). */
  sendPos: SourcePos | null;
  stop: boolean;
  pos: SourcePos;
}

/** What the files read so far define: one per parseRules call, shared with the files it includes. */
export interface RulesState {
  readonly files: string[];
  readonly clusters: Cluster[];
  readonly clusterByName: Map<string, Cluster>;
  /** Keyed by `<proto>/<address>/<port>` (rules-parse-cluster serverKey). */
  readonly servers: Map<string, ServerEntry>;
  readonly rules: Rule[];
  statistics: StatisticsState | null;
  readonly listen: ListenBlock[];
  readonly listeners: ListenerEntry[];
}

/** A new, empty RulesState. */
export function createRulesState(): RulesState {
  return {
    files: [],
    clusters: [],
    clusterByName: new Map(),
    servers: new Map(),
    rules: [],
    statistics: null,
    listen: [],
    listeners: [],
  };
}

/** `file:line:column`. */
export const at = (p: SourcePos): string => `${p.file}:${p.line}:${p.column}`;

/** Quotes a value for a message: `"a.b"`. */
export const q = (s: string): string => `"${s}"`;

/** `"a", "b" or "c"`. */
export function oneOf(items: readonly string[]): string {
  if (items.length <= 1) return items.join("");
  return `${items.slice(0, -1).join(", ")} or ${items[items.length - 1]}`;
}

/** The token stream of one file, with one token of look-ahead, and the state the statements build. */
export class ParseContext {
  readonly state: RulesState;
  readonly #lexer: RulesLexer;
  #tok: Token;

  constructor(lexer: RulesLexer, state: RulesState) {
    this.#lexer = lexer;
    this.state = state;
    this.#tok = lexer.next();
  }

  /** The current token (not yet taken). */
  get tok(): Token {
    return this.#tok;
  }

  /** Takes the current token. */
  take(): Token {
    const t = this.#tok;
    if (t.kind !== "eof") this.#tok = this.#lexer.next();
    return t;
  }

  /** Whether the current token is of kind `kind`. */
  is(kind: TokenKind): boolean {
    return this.#tok.kind === kind;
  }

  /** Takes the current token when it is of kind `kind`. */
  accept(kind: TokenKind): Token | null {
    return this.#tok.kind === kind ? this.take() : null;
  }

  /**
   * Takes a token of kind `kind`, or fails with
   * `expected <what> <where>, found <token>`.
   */
  expect(kind: TokenKind, what: string, where: string): Token {
    const t = this.accept(kind);
    if (t === null) this.unexpected(what, where);
    return t;
  }

  /** Fails at the current token: `expected <what> <where>, found <token>`. */
  unexpected(what: string, where: string, hint = ""): never {
    const found = describeToken(this.#tok);
    throw new RulesError(this.#tok.pos, `expected ${what} ${where}, found ${found}${hint}`);
  }

  /** Fails at `pos`. */
  fail(pos: SourcePos, detail: string): never {
    throw new RulesError(pos, detail);
  }

  /** Fails when an `int` token is beyond what carbon-c-relay's atoi reads (2^31-1). */
  int(t: Token): number {
    if (t.value > 2147483647) this.fail(t.pos, `number too large: ${t.raw}`);
    return t.value;
  }

  /** Refuses a feature polymur cannot run, at the token that asks for it. */
  unsupported(t: Token, what: string): never {
    throw new RulesError(t.pos, `${what} is not supported by polymur`);
  }
}
