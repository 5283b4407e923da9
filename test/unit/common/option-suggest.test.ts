import { describe, expect, it } from "vitest";
import { closestName, editDistance, unknownOptionText } from "../../../common/option-suggest.ts";

describe("option suggestions", () => {
  it("counts an adjacent transposition as one edit", () => {
    expect(editDistance("hash", "hash")).toBe(0);
    expect(editDistance("hsah", "hash")).toBe(1);
    expect(editDistance("", "abc")).toBe(3);
    expect(editDistance("listen-adr", "listen-addr")).toBe(1);
    expect(editDistance("kitten", "sitting")).toBe(3);
  });

  it("suggests only a close name, the first of equals", () => {
    const names = ["hash", "hash-normalize", "listen-addr", "compat", "router"];
    expect(closestName("hsah", names)).toBe("hash");
    expect(closestName("hash-normalise", names)).toBe("hash-normalize");
    expect(closestName("listen_addr", names)).toBe("listen-addr");
    expect(closestName("frobnicate", names)).toBeUndefined();
    expect(closestName("xy", names)).toBeUndefined();
    expect(closestName("rooter", names)).toBe("router");
  });

  it("words the message with or without a suggestion", () => {
    expect(unknownOptionText("--hsah", "hsah", ["hash"], "polymur relay --help")).toBe(
      "unknown option --hsah; did you mean --hash?",
    );
    expect(unknownOptionText("-frob", "frob", ["hash"], "polymur relay --help")).toBe(
      "unknown option -frob (see polymur relay --help)",
    );
  });
});
