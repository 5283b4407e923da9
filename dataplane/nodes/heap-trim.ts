import type v8 from "node:v8";
import type vm from "node:vm";
import { lazyBuiltin } from "../../common/lazy-builtin.ts";
import { CpuLoad } from "./worker-scaling.ts";

const loadV8 = lazyBuiltin<typeof v8>("node:v8");
const loadVm = lazyBuiltin<typeof vm>("node:vm");

/** Every HeapTrim default, in one place. */
export const HEAP_TRIM_DEFAULTS = {
  /** How often the process's load is looked at (ms). */
  tickMs: 1_000,
  /** Idle: under this share of a core (CpuLoad)... */
  idleLoad: 0.02,
  /** ...for this many ticks in a row. */
  idleTicks: 10,
} as const;

export type HeapTrimSettings = { -readonly [K in keyof typeof HEAP_TRIM_DEFAULTS]: number };

/**
 * Gives an idle process's unused heap back to the system, once per idle
 * spell. A burst (thousands of senders connecting, a backlog replayed)
 * grows V8's young generation to its largest, 32 MiB committed of which
 * about 17 are resident, and V8 does not shrink it while the process does
 * little: nothing allocates enough to start the collections that would.
 * With 5,000 idle connections that was 15% of the relay's memory. One
 * collection that reduces the footprint ("last-resort": V8 shrinks the
 * young generation and compacts the old one) gives it back: 104 MiB to
 * 92 MiB, measured; it takes a few milliseconds, once, when the process
 * has been idle for `idleTicks` ticks, and again only after the load rose
 * above `idleLoad` and fell back. V8 grows the young generation again when
 * the load does.
 *
 * The collector is reached the way Node's documentation of
 * v8.setFlagsFromString shows, exposed for that one call and hidden again.
 */
export class HeapTrim {
  readonly #s: HeapTrimSettings;
  readonly #cpu = new CpuLoad();
  readonly #collect: () => void;
  #quiet = 0;
  #armed = true;
  #timer: NodeJS.Timeout | null = null;
  /** How many times it trimmed. */
  trims = 0;

  constructor(settings: Partial<HeapTrimSettings> = {}, collect: () => void = reduceFootprint) {
    this.#s = { ...HEAP_TRIM_DEFAULTS, ...settings };
    this.#collect = collect;
  }

  start(): this {
    this.#timer = setInterval(() => {
      // The collection's own CPU is not load: counted, it would re-arm the
      // trim and collect again every idle spell's length (measured: 1% of a
      // core, idle).
      if (this.observe(this.#cpu.sample())) this.#cpu.sample();
    }, this.#s.tickMs);
    this.#timer.unref();
    return this;
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  /**
   * One tick's load (share of a core); trims when the process has been idle
   * long enough. Returns whether it trimmed.
   */
  observe(load: number): boolean {
    if (load >= this.#s.idleLoad) {
      this.#quiet = 0;
      this.#armed = true;
      return false;
    }
    this.#quiet++;
    if (!this.#armed || this.#quiet < this.#s.idleTicks) return false;
    this.#armed = false;
    this.trims++;
    this.#collect();
    return true;
  }
}

type Gc = (options: { type: "major"; execution: "sync"; flavor: "last-resort" }) => void;
let gc: Gc | null = null;

/** A full collection that also shrinks the young generation (V8's CollectAllAvailableGarbage). */
function reduceFootprint(): void {
  if (gc === null) {
    loadV8().setFlagsFromString("--expose-gc");
    gc = loadVm().runInNewContext("gc") as Gc;
    loadV8().setFlagsFromString("--no-expose-gc");
  }
  gc({ type: "major", execution: "sync", flavor: "last-resort" });
}
