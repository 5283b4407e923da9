import { describe, expect, it } from "vitest";
import { PrometheusText } from "../../../../dataplane/observe/prometheus-text.ts";
import { parseExposition } from "../../../fixtures/prometheus-exposition.ts";

describe("PrometheusText", () => {
  it("is empty with no metric", () => {
    expect(new PrometheusText().toString()).toBe("");
  });

  it("writes HELP, TYPE and one sample per row; no braces without labels", () => {
    const text = new PrometheusText()
      .metric("a_total", "counter", "Things counted.", [[{}, 3]])
      .metric("b", "gauge", "A level.", [
        [{ x: "1" }, 0.5],
        [{ x: "2", y: "z" }, -1],
      ])
      .toString();
    expect(text).toBe(
      [
        "# HELP a_total Things counted.",
        "# TYPE a_total counter",
        "a_total 3",
        "# HELP b A level.",
        "# TYPE b gauge",
        'b{x="1"} 0.5',
        'b{x="2",y="z"} -1',
        "",
      ].join("\n"),
    );
    const f = parseExposition(text);
    expect(f.get("b")?.samples).toEqual([
      { labels: { x: "1" }, value: 0.5 },
      { labels: { x: "2", y: "z" }, value: -1 },
    ]);
  });

  it("writes HELP and TYPE for a family without rows", () => {
    const text = new PrometheusText()
      .metric("none_total", "counter", "Nothing yet.", [])
      .toString();
    expect(text).toBe("# HELP none_total Nothing yet.\n# TYPE none_total counter\n");
    expect(parseExposition(text).get("none_total")?.samples).toEqual([]);
  });

  it("escapes backslash, double quote and newline in label values, in that order", () => {
    const value = 'a\\b"c\nd\\n';
    const text = new PrometheusText().metric("m", "gauge", "h", [[{ l: value }, 1]]).toString();
    expect(text.split("\n")[2]).toBe('m{l="a\\\\b\\"c\\nd\\\\n"} 1');
    expect(parseExposition(text).get("m")?.samples[0]?.labels["l"]).toBe(value);
  });

  it("keeps label order as given", () => {
    const text = new PrometheusText().metric("m", "gauge", "h", [[{ z: "1", a: "2" }, 1]]);
    expect(text.toString()).toContain('m{z="1",a="2"} 1\n');
  });

  it("the exposition checker used by these tests refuses malformed text", () => {
    const bad = [
      "m 1\n", // no HELP/TYPE
      "# HELP m h\nm 1\n", // no TYPE
      "# HELP m h\n# TYPE m counter\nother 1\n", // sample outside its family
      '# HELP m h\n# TYPE m counter\nm{l="a"b"} 1\n', // unescaped quote
      '# HELP m h\n# TYPE m counter\nm{l="a\nb"} 1\n', // raw newline
      "# HELP m h\n# TYPE m counter\nm x\n", // not a number
      "# HELP m h\n# TYPE m counter\nm 1", // no final newline
      "# HELP m h\n# TYPE m counter\n# HELP m h\n# TYPE m counter\n", // family twice
    ];
    for (const t of bad) expect(() => parseExposition(t), JSON.stringify(t)).toThrow();
  });
});
