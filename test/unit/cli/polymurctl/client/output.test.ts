import { describe, expect, it } from "vitest";
import { fail, isoTime, printJson, table } from "../../../../../cli/polymurctl/client/output.ts";
import { captureIO } from "../io.ts";

describe("polymurctl output", () => {
  it("table: left-aligned columns two spaces apart, as wide as their widest cell", () => {
    expect(
      table(
        ["DESTINATION", "SCOPE"],
        [
          ["10.0.5.30:2003", "all"],
          ["10.0.6.2:2003=b", "group web"],
        ],
      ),
    ).toBe(
      "DESTINATION      SCOPE\n" + //
        "10.0.5.30:2003   all\n" +
        "10.0.6.2:2003=b  group web\n",
    );
  });

  it("table: the last column is not padded, short rows leave no trailing spaces", () => {
    const t = table(
      ["NAME", "VERSION", "SEEN"],
      [
        ["a", "1", "now"],
        ["longer-name", "12"],
      ],
    );
    expect(t).toBe(
      "NAME         VERSION  SEEN\n" + //
        "a            1        now\n" +
        "longer-name  12\n",
    );
    for (const line of t.split("\n")) expect(line).toBe(line.trimEnd());
  });

  it("table: a header alone when there are no rows", () => {
    expect(table(["NAME", "CREATED"], [])).toBe("NAME  CREATED\n");
  });

  it("fail: one line on stderr, the exit status back", () => {
    const c = captureIO();
    const exit = fail("dest ls", c.io, { exit: 3, message: "cannot reach\n   it \n" }, false);
    expect(exit).toBe(3);
    expect(c.stderr()).toBe("polymurctl dest ls: cannot reach it\n");
    expect(c.stdout()).toBe("");
  });

  it("fail with --json: an error object on stdout too, codes only when known", () => {
    const c = captureIO();
    fail(
      "dest rm",
      c.io,
      { exit: 1, message: "no such", code: "not_found", polymurCode: "POLYMUR_ERR_NOT_FOUND" },
      true,
    );
    fail("dest rm", c.io, { exit: 2, message: "usage" }, true);
    expect(c.stdout().split("\n")).toEqual([
      '{"error":{"message":"no such","exit":1,"code":"not_found","polymurCode":"POLYMUR_ERR_NOT_FOUND"}}',
      '{"error":{"message":"usage","exit":2}}',
      "",
    ]);
    expect(c.stderr()).toBe("polymurctl dest rm: no such\npolymurctl dest rm: usage\n");
  });

  it("printJson: one line, int64 as numbers", () => {
    const c = captureIO();
    printJson(c.io, { version: 42n, added: ["a:1"], scope: { all: true } });
    expect(c.stdout()).toBe('{"version":42,"added":["a:1"],"scope":{"all":true}}\n');
  });

  it("isoTime: a protobuf Timestamp in UTC to the second, or empty when unset", () => {
    expect(isoTime({ seconds: 1_700_000_000n, nanos: 999_000_000 })).toBe("2023-11-14T22:13:20Z");
    expect(isoTime({ seconds: 0n, nanos: 0 })).toBe("");
    expect(isoTime(undefined)).toBe("");
  });
});
