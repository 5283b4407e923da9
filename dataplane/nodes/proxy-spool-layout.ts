import fs from "node:fs";
import path from "node:path";
import { holdsSegments, removeIdleSpoolDir } from "../spool/spool-dir.ts";

/**
 * The layout of a proxy's --spool-dir when it runs several processes
 * (--workers), and the proxy ids its processes stream with:
 *
 *   <spool-dir>/                 process 0's spool (the primary): the layout
 *                                of a single-process proxy, so that an upgrade
 *                                recovers an existing spool and a downgrade
 *                                still finds process 0's batches
 *       proxy-id, state.json, seg-*.spool, lock
 *       p<k>/                    process k's spool (k ≥ 1), a spool directory of its own
 *           proxy-id             `<process 0's id>.w<k>` when made
 *
 * Each process appends to, recovers and locks only its own directory, so a
 * restarted process resumes its own batches under its own id and seqs. A
 * directory p<j> whose number is beyond today's process count (the proxy ran
 * with more processes before) is taken over by process j mod count, which
 * drains it over a link of its own, under the id kept in it, then removes it
 * (spool-drain.ts): no spool is left orphaned.
 *
 * Proxy ids: a gateway lets one instance of a proxy id stream at a time, and
 * de-duplicates per (key, proxy id, instance); so each process has its own
 * id. Process 0 keeps the proxy's (the one in <spool-dir>/proxy-id, or a new
 * one without a spool); process k derives `<id>.w<k>` from it, kept in its
 * directory with a spool (stable across restarts), derived again at each
 * start without one.
 */

const PROCESS_DIR = /^p(\d+)$/;

/** Process `index`'s spool directory under the proxy's --spool-dir. */
export function processSpoolDir(root: string, index: number): string {
  return index === 0 ? root : path.join(root, `p${index}`);
}

/** The proxy id of process `index` (k ≥ 1), derived from process 0's. */
export function workerProxyId(base: string, index: number): string {
  return index === 0 ? base : `${base}.w${index}`;
}

/** A spool directory of a process number beyond today's count, that this process takes over. */
export interface AdoptedSpool {
  dir: string;
  /** The process number it belonged to. */
  index: number;
}

/**
 * The directories p<j> in `root` that process `index` of `count` takes over:
 * every j ≥ count with j mod count = index that holds a segment. Those of
 * its numbers that hold none are removed (unless a live process holds one).
 */
export function adoptedSpools(root: string, index: number, count: number): AdoptedSpool[] {
  let names: string[];
  try {
    names = fs.readdirSync(root);
  } catch {
    return [];
  }
  const out: AdoptedSpool[] = [];
  for (const name of names) {
    const m = PROCESS_DIR.exec(name);
    if (m === null) continue;
    const j = Number(m[1]);
    if (j < Math.max(1, count) || j % count !== index) continue;
    const dir = path.join(root, name);
    if (holdsSegments(dir)) out.push({ dir, index: j });
    else removeIdleSpoolDir(dir);
  }
  return out.sort((a, b) => a.index - b.index);
}
