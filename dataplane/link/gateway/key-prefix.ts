import type { LineSink } from "../../ingest/line-sink.ts";

const NL = 0x0a;

/**
 * The gateway's --key-prefix: every line passes on as `<prefix>.<line>`, so
 * the metric name (before any `;tags`, since it is at the start) gets the
 * API key's name in front. One copy per run of lines.
 */
export class KeyPrefixSink implements LineSink {
  readonly #next: LineSink;
  readonly #prefix: Buffer;

  constructor(next: LineSink, keyName: string) {
    this.#next = next;
    this.#prefix = Buffer.from(`${keyName}.`);
  }

  write(buf: Buffer, start: number, end: number, lines: number): void {
    const prefix = this.#prefix;
    const out = Buffer.allocUnsafe(end - start + lines * prefix.length);
    let o = 0;
    let ls = start;
    while (ls < end) {
      const nl = buf.indexOf(NL, ls);
      o += prefix.copy(out, o);
      o += buf.copy(out, o, ls, nl + 1);
      ls = nl + 1;
    }
    this.#next.write(out, 0, o, lines);
  }
}
