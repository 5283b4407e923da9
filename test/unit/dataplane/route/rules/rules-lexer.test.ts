import { describe, expect, it } from "vitest";
import { RulesError } from "../../../../../dataplane/route/rules/rules-config.ts";
import {
  describeToken,
  MAX_QUOTED,
  RulesLexer,
  type Token,
} from "../../../../../dataplane/route/rules/rules-lexer.ts";

function lex(text: string): Token[] {
  const lx = new RulesLexer(text, "t.conf");
  const out: Token[] = [];
  for (let t = lx.next(); ; t = lx.next()) {
    out.push(t);
    if (t.kind === "eof") return out;
  }
}

/** `kind` for keywords and punctuation, `kind:text` for strings, numbers and the unexpected. */
function kinds(text: string): string[] {
  return lex(text).map((t) =>
    t.kind === "string" || t.kind === "int" || t.kind === "percentile" || t.kind === "unexpected"
      ? `${t.kind}:${t.kind === "int" || t.kind === "percentile" ? t.value : t.text}`
      : t.kind,
  );
}

function lexError(text: string): string {
  try {
    lex(text);
  } catch (err) {
    if (err instanceof RulesError) return err.message;
    throw err;
  }
  throw new Error("no error");
}

describe("RulesLexer: conffile.l's states", () => {
  it("reads members written after a scheme as one string, and ssl and its PEM file", () => {
    expect(
      kinds(
        "cluster c forward pickle+tls://[::1]:2004=a tls://h:2003 transport plain ssl 10.0.0.1 transport plain mtls c.pem k.pem;",
      ),
    ).toEqual([
      "cluster",
      "string:c",
      "forward",
      "string:pickle+tls://[::1]:2004",
      "=",
      "string:a",
      "string:tls://h:2003",
      "transport",
      "plain",
      "ssl",
      "string:10.0.0.1",
      "transport",
      "plain",
      // carbon-c-relay 3.7.3's scanner has no mtls: a string, as there.
      "string:mtls",
      "string:c.pem",
      "string:k.pem",
      ";",
      "eof",
    ]);
    expect(
      kinds("listen type linemode transport plain ssl /etc/both.pem 2003 proto tcp /s proto unix;"),
    ).toEqual([
      "listen",
      "type",
      "linemode",
      "transport",
      "plain",
      "ssl",
      "string:/etc/both.pem",
      "string:2003",
      "proto",
      "tcp",
      "string:/s",
      "proto",
      "unix",
      ";",
      "eof",
    ]);
  });

  it("reads a cluster: keywords, members, = and instance numbers", () => {
    expect(
      kinds("cluster c carbon_ch replication 2 dynamic 10.0.0.1:2003=a 10.0.0.2=7 proto udp;"),
    ).toEqual([
      "cluster",
      "string:c",
      "carbon_ch",
      "replication",
      "int:2",
      "dynamic",
      "string:10.0.0.1:2003",
      "=",
      "string:a",
      "string:10.0.0.2",
      "=",
      "int:7",
      "proto",
      "udp",
      ";",
      "eof",
    ]);
  });

  it("makes digits a number where numbers are read, a string when longer IDCHR follows", () => {
    expect(kinds("cluster a forward 2003 2003x;")).toEqual([
      "cluster",
      "string:a",
      "forward",
      "int:2003",
      "string:2003x",
      ";",
      "eof",
    ]);
  });

  it("reads `stop` as an expression after match, as a keyword after send to", () => {
    expect(kinds("match a stop send to b stop;")).toEqual([
      "match",
      "string:a",
      "string:stop",
      "send",
      "to",
      "string:b",
      "stop",
      ";",
      "eof",
    ]);
  });

  it("takes the longest match: a keyword glued to a word, and keywords glued together", () => {
    expect(kinds("clusterfoo forward 1.2.3.4;")).toEqual([
      "cluster",
      "string:foo",
      "forward",
      "string:1.2.3.4",
      ";",
      "eof",
    ]);
    expect(
      kinds("aggregate x every 60seconds expire after 75seconds compute summary write to y;"),
    ).toEqual([
      "aggregate",
      "string:x",
      "every",
      "int:60",
      "seconds",
      "expire",
      "after",
      "int:75",
      "seconds",
      "compute",
      "sum",
      "write",
      "to",
      "string:y",
      ";",
      "eof",
    ]);
  });

  it("knows the aliases and percentileNN", () => {
    expect(
      kinds(
        "aggregate x every 1 seconds expire after 2 seconds compute cnt compute maximum compute minimum compute avg compute percentile95 compute percentile",
      ),
    ).toEqual(
      expect.arrayContaining(["count", "max", "min", "average", "percentile:95", "percentile:0"]),
    );
  });

  it("keeps `*` a token after match but a string when longer", () => {
    expect(kinds("match * send to a;")[1]).toBe("*");
    expect(kinds("match ** send to a;")[1]).toBe("string:**");
    expect(kinds("aggregate * every")[1]).toBe("string:*");
  });

  it("reads `stop` after an aggregate's write to (carbon-c-relay does not)", () => {
    expect(
      kinds(
        "aggregate x every 1 seconds expire after 2 seconds compute sum write to y stop;",
      ).slice(-3),
    ).toEqual(["stop", ";", "eof"]);
  });

  it("returns to the first state at ;", () => {
    expect(kinds("match a send to b; stop")).toEqual([
      "match",
      "string:a",
      "send",
      "to",
      "string:b",
      ";",
      "unexpected:s",
      "unexpected:t",
      "unexpected:o",
      "unexpected:p",
      "eof",
    ]);
  });

  it("reads listen, include and statistics", () => {
    expect(kinds("listen type linemode transport plain 2003 proto tcp /tmp/s proto unix;")).toEqual(
      [
        "listen",
        "type",
        "linemode",
        "transport",
        "plain",
        "string:2003",
        "proto",
        "tcp",
        "string:/tmp/s",
        "proto",
        "unix",
        ";",
        "eof",
      ],
    );
    expect(kinds("include /etc/*.conf;")).toEqual(["include", "string:/etc/*.conf", ";", "eof"]);
    expect(kinds("statistics submit every 60 seconds prefix with a.b send to c stop;")).toEqual([
      "statistics",
      "submit",
      "every",
      "int:60",
      "seconds",
      "prefix",
      "with",
      "string:a.b",
      "send",
      "to",
      "string:c",
      "stop",
      ";",
      "eof",
    ]);
  });
});

describe("RulesLexer: strings", () => {
  it("drops the backslashes of a quoted string and keeps those of an unquoted one", () => {
    const [, q, u] = lex('match "^a\\.b\\\\c\\"" ^foo\\.bar$ send to x;');
    expect(q).toMatchObject({
      kind: "string",
      text: '^a.b\\c"',
      raw: '"^a\\.b\\\\c\\""',
      quoted: true,
    });
    expect(u).toMatchObject({ kind: "string", text: "^foo\\.bar$", quoted: false });
  });

  it("continues an unquoted string over a backslash-space", () => {
    expect(kinds("match foo\\ bar\\ baz x\\  y")).toEqual([
      "match",
      "string:foo\\ bar\\ baz",
      "string:x\\",
      "string:y",
      "eof",
    ]);
  });

  it("keeps `#` and spaces inside quotes", () => {
    expect(lex('match "#a b;c" send')[1]!.text).toBe("#a b;c");
  });

  it("refuses empty, unterminated and oversized strings", () => {
    expect(lexError('match "" send')).toBe("t.conf:1:7: empty string");
    expect(lexError('match "abc\nsend')).toBe(
      "t.conf:1:7: unterminated string (a newline before the closing quote)",
    );
    expect(lexError('match "abc')).toBe("t.conf:1:7: unterminated string (no closing quote)");
    expect(lexError('match "abc\\\n"')).toBe(
      "t.conf:1:11: unterminated string (a backslash at the end of the line)",
    );
    expect(lexError(`match "${"x".repeat(MAX_QUOTED + 1)}"`)).toBe(
      "t.conf:1:7: string too large (more than 1023 characters)",
    );
    expect(lex(`match "${"x".repeat(MAX_QUOTED)}"`)[1]!.text).toHaveLength(MAX_QUOTED);
  });

  it("refuses a NUL byte, wherever it is", () => {
    expect(lexError("match a send to b;\n# x\0y\n")).toBe("t.conf:2:4: NUL byte in the file");
  });

  it("reads a quoted string where an unquoted one may come only", () => {
    expect(kinds('"x"')).toEqual(['unexpected:"', "unexpected:x", 'unexpected:"', "eof"]);
  });
});

describe("RulesLexer: positions and comments", () => {
  it("gives 1-based lines and columns, a tab one column, CRLF as a newline", () => {
    const t = lex('# c\r\n\tcluster  a\r\n  forward "x";');
    expect(t.map((x) => [x.kind, x.pos.line, x.pos.column])).toEqual([
      ["cluster", 2, 2],
      ["string", 2, 11],
      ["forward", 3, 3],
      ["string", 3, 11],
      [";", 3, 14],
      ["eof", 3, 15],
    ]);
    expect(t[3]!.valuePos).toEqual({ file: "t.conf", line: 3, column: 12 });
  });

  it("skips comments anywhere, also one that ends the file without a newline", () => {
    expect(kinds("match a # comment ; stop\nsend to b; # last")).toEqual([
      "match",
      "string:a",
      "send",
      "to",
      "string:b",
      ";",
      "eof",
    ]);
  });

  it("describes tokens for messages, with the letters glued to a keyword", () => {
    const t = lex('aggregate x every 1 seconds expire after 2 seconds compute total "q" 5');
    const total = t.find((x) => x.kind === "to")!;
    expect(describeToken(total)).toBe('"total"');
    expect(describeToken(lex("@foo bar")[0]!)).toBe('"@foo"');
    expect(describeToken(lex("")[0]!)).toBe("end of file");
    expect(describeToken(lex('match "q"')[1]!)).toBe('the string "q"');
    expect(describeToken(lex("cluster a forward 5")[3]!)).toBe("the number 5");
  });
});
