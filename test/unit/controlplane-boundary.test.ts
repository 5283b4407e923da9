import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

// ARCHITECTURE/STYLE: controlplane/ depends on gen/, common/ and the one data-plane
// module that defines what a destination spec is; never on the rest of dataplane/ or cli/.
const ALLOWED_DATAPLANE = new Set(["../dataplane/destination-spec.ts"]);

describe("controlplane/ module boundary", () => {
  const dir = new URL("../../controlplane/", import.meta.url);
  const files = readdirSync(dir).filter((f) => f.endsWith(".ts"));
  it.each(files)("%s imports only gen/, common/ and destination-spec", (file) => {
    const text = readFileSync(new URL(file, dir), "utf8");
    const imports = [...text.matchAll(/(?:from|import)\s*\(?\s*"(\.[^"]+)"/g)].map((m) => m[1]!);
    const bad = imports.filter(
      (p) =>
        !p.startsWith("./") &&
        !p.startsWith("../gen/") &&
        !p.startsWith("../common/") &&
        !ALLOWED_DATAPLANE.has(p),
    );
    expect(bad).toEqual([]);
  });
});
