import { PolymurError } from "../../../common/errors.ts";
import { FAST_OK, validateFast, validateSlow } from "../../../dataplane/ingest/line-validator.ts";
import { RulesError } from "../../../dataplane/route/rules/rules-config.ts";
import { loadRules } from "../../../dataplane/route/rules/rules-files.ts";
import {
  RulesProgram,
  type RulesVisitor,
  targetText,
} from "../../../dataplane/route/rules/rules-program.ts";
import { EXIT, fail } from "../client/index.ts";
import type { CommandIO } from "../command.ts";

/**
 * `polymurctl route test --rules FILE [--json]`: a relay.conf's decisions for
 * the lines on stdin, as a relay would take them (validated first), without
 * a control plane: per line, the members it goes to and under which name,
 * the blackhole, the aggregates, or why it stopped.
 */

/** A latin1 (one char per byte) name as text (its bytes read as UTF-8). */
function utf8Text(latin1: string): string {
  for (let i = 0; i < latin1.length; i++) {
    if (latin1.charCodeAt(i) >= 0x80) return Buffer.from(latin1, "latin1").toString("utf8");
  }
  return latin1;
}

/** What the rules do with one line: the visitor that collects it, and its --json shape. */
class LineTrace implements RulesVisitor {
  readonly #program: RulesProgram;
  readonly #destinations: readonly string[];
  sends: { cluster: string; destination: string; metric: string }[] = [];
  blackholed = false;
  aggregates: { cluster: string | null; metric: string }[] = [];
  dropped: string | null = null;

  constructor(program: RulesProgram) {
    this.#program = program;
    this.#destinations = program.targets.map(targetText);
  }

  reset(): void {
    this.sends = [];
    this.blackholed = false;
    this.aggregates = [];
    this.dropped = null;
  }

  send(cluster: string, target: number, metric: string): void {
    this.sends.push({
      cluster,
      destination: this.#destinations[target]!,
      metric: utf8Text(metric),
    });
  }

  blackhole(): void {
    this.blackholed = true;
  }

  aggregate(aggregate: number, _compute: number, metric: string): void {
    const to = this.#program.aggregates[aggregate]!.sendTo;
    const name = utf8Text(metric);
    if (to === null) this.aggregates.push({ cluster: null, metric: name });
    else if (to.blackhole) this.aggregates.push({ cluster: "blackhole", metric: name });
    else for (const cluster of to.clusters) this.aggregates.push({ cluster, metric: name });
  }

  drop(reason: "validate"): void {
    this.dropped = reason;
  }

  up(): boolean {
    return true;
  }

  json(line: string): string {
    const { sends, blackholed, aggregates, dropped } = this;
    return `${JSON.stringify({ line, sends, blackholed, aggregates, dropped })}\n`;
  }

  text(line: string): string {
    let out = `${line}\n`;
    for (const s of this.sends) out += `    send ${s.cluster} ${s.destination} ${s.metric}\n`;
    for (const a of this.aggregates) {
      out += `    aggregate ${a.metric} -> ${a.cluster ?? "(routed by the rules)"}\n`;
    }
    if (this.blackholed) out += "    blackholed\n";
    if (this.dropped !== null) out += `    dropped: ${this.dropped}\n`;
    else if (this.sends.length === 0 && this.aggregates.length === 0 && !this.blackholed) {
      out += "    nothing matched\n";
    }
    return out;
  }
}

const SP = 0x20;
const TAB = 0x09;

/** Routes the line in buf[start, end) (no newline) into `trace`, as a relay would after ingest. */
function traceLine(
  program: RulesProgram,
  trace: LineTrace,
  buf: Buffer,
  start: number,
  end: number,
): void {
  trace.reset();
  let line = buf;
  if (validateFast(buf, start, end) !== FAST_OK) {
    const r = validateSlow(buf.subarray(start, end), Math.floor(Date.now() / 1000));
    if (!r.ok) {
      trace.dropped = r.reason;
      return;
    }
    line = Buffer.from(r.line, "utf8");
    start = 0;
    end = line.length;
  }
  let sep = start;
  while (sep < end && line[sep] !== SP && line[sep] !== TAB) sep++;
  program.route(line.toString("latin1", start, sep), line.toString("latin1", sep, end), trace);
}

/** Writes `text` to `out`; resolves when it may take more ('drain', or an error such as EPIPE). */
function write(out: CommandIO["stdout"], text: string): Promise<void> | undefined {
  if (text === "" || out.write(text)) return undefined;
  return new Promise<void>((resolve) => {
    const done = (): void => {
      for (const e of ["drain", "error", "close"]) out.off(e, done);
      resolve();
    };
    for (const e of ["drain", "error", "close"]) out.on(e, done);
  });
}

export async function routeTest(
  args: readonly string[],
  rulesPath: string | undefined,
  json: boolean,
  io: CommandIO,
): Promise<number> {
  const name = "route test";
  if (rulesPath === undefined) {
    return fail(
      name,
      io,
      { exit: EXIT.usage, message: "route test needs --rules FILE (see --help)" },
      json,
    );
  }
  if (args.length > 0) {
    return fail(name, io, { exit: EXIT.usage, message: `unexpected argument "${args[0]}"` }, json);
  }
  let program: RulesProgram;
  try {
    program = RulesProgram.compile(await loadRules(rulesPath));
  } catch (err) {
    if (!(err instanceof Error)) throw err;
    const polymurCode = err instanceof PolymurError ? err.code : undefined;
    const message =
      err instanceof RulesError || polymurCode !== undefined
        ? err.message
        : `${rulesPath}: ${err.message}`;
    return fail(
      name,
      io,
      { exit: EXIT.usage, message, ...(polymurCode === undefined ? {} : { polymurCode }) },
      json,
    );
  }
  const trace = new LineTrace(program);
  let closed = false;
  io.stdout.on("error", () => {
    closed = true; // EPIPE (`| head`): stop quietly
  });
  let text = ""; // written in chunks of about 64 KiB
  const emit = (buf: Buffer, start: number, end: number): void => {
    if (end > start && buf[end - 1] === 0x0d) end--; // CRLF
    traceLine(program, trace, buf, start, end);
    const line = buf.toString("utf8", start, end);
    text += json ? trace.json(line) : trace.text(line);
  };
  let carry: Buffer | null = null;
  for await (const chunk of io.stdin as AsyncIterable<Buffer>) {
    if (closed) break;
    const buf: Buffer = carry === null ? chunk : Buffer.concat([carry, chunk]);
    carry = null;
    let start = 0;
    for (let nl = buf.indexOf(10); nl >= 0; nl = buf.indexOf(10, start)) {
      emit(buf, start, nl);
      start = nl + 1;
      if (text.length >= 65536) {
        await write(io.stdout, text);
        text = "";
      }
    }
    if (start < buf.length) carry = Buffer.from(buf.subarray(start)); // a copy: don't pin the chunk
  }
  if (carry !== null && !closed) emit(carry, 0, carry.length);
  if (!closed) await write(io.stdout, text);
  return EXIT.ok;
}
