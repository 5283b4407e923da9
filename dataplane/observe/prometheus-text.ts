/** Builds Prometheus text exposition format, one metric family at a time. */
export class PrometheusText {
  readonly #out: string[] = [];

  /** `rows`: [labels as {k: v}, value]. */
  metric(
    name: string,
    type: "counter" | "gauge",
    help: string,
    rows: ReadonlyArray<readonly [Record<string, string>, number]>,
  ): this {
    this.#out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, v] of rows) {
      const l = Object.entries(labels)
        .map(([k, x]) => `${k}="${escapeLabel(x)}"`)
        .join(",");
      this.#out.push(`${name}${l === "" ? "" : `{${l}}`} ${v}`);
    }
    return this;
  }

  toString(): string {
    return this.#out.length === 0 ? "" : this.#out.join("\n") + "\n";
  }
}

function escapeLabel(v: string): string {
  return v.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}
