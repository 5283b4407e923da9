import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ErrorCode } from "../../common/errors.ts";
import { REJECT_REASONS } from "../../dataplane/ingest/line-validator.ts";

// As fastify does: a code or reason that operators can see must be documented.
describe("docs/errors.md", () => {
  const doc = readFileSync(new URL("../../docs/errors.md", import.meta.url), "utf8");
  it.each(Object.values(ErrorCode))("documents %s", (code) => {
    expect(doc).toContain(`\`${code}\``);
  });
  it.each(REJECT_REASONS)("documents reject reason %s", (reason) => {
    expect(doc).toContain(`\`${reason}\``);
  });
});
