import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { PRIVATE_DIR_MODE, writePrivateFile } from "../../common/private-files.ts";
import { holdsSegments, removeIdleSpoolDir } from "../spool/spool-dir.ts";

/**
 * The layout of --queue-dir, where destinations' disk queues live:
 *
 *   <queue-dir>/<destination>/           one per destination that had a disk queue
 *       destination                      its spec (`host:port[:instance]`): how to reach it again
 *       p<N>/                            process N's disk queue (0: the primary, 1…: the
 *                                        worker processes), a SegmentSpool directory
 *
 * `<destination>` is the destination's id made safe for a file name, and a
 * short hash of the id, so that two ids never share a directory. A
 * destination's queue is found again by its id, by the process with the same
 * number; directories nobody opens (a destination removed while the relay
 * was down, a process number beyond today's worker count) are adopted
 * (findQueues) and drained or re-routed by the router.
 */

const IDENTITY_FILE = "destination";
const PROCESS_DIR = /^p(\d+)$/;

/** The directory of destination `id`'s disk queues. */
export function destinationDir(root: string, id: string): string {
  const safe = id.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 80);
  const hash = createHash("sha256").update(id).digest("hex").slice(0, 8);
  return path.join(root, `${safe}-${hash}`);
}

/** Process `index`'s disk queue of destination `id` (its directory and identity file made, owner-only). */
export function processQueueDir(root: string, id: string, spec: string, index: number): string {
  const dir = destinationDir(root, id);
  fs.mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  const identity = path.join(dir, IDENTITY_FILE);
  if (!fs.existsSync(identity)) writePrivateFile(identity, `${spec}\n`);
  return path.join(dir, `p${index}`);
}

/** A process's disk queue found in --queue-dir that holds segments. */
export interface FoundQueue {
  /** The process directory (a SegmentSpool directory). */
  dir: string;
  /** The destination's spec, as its identity file says. */
  spec: string;
  /** The process number it belonged to. */
  index: number;
}

/**
 * The disk queues in `root` that hold segments, each with the destination
 * it belongs to. A directory without an identity file is not polymur's, and
 * is left alone.
 */
export function findQueues(root: string): FoundQueue[] {
  const out: FoundQueue[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(root);
  } catch {
    return out;
  }
  for (const name of names.sort()) {
    const dest = path.join(root, name);
    let spec: string;
    try {
      spec = fs.readFileSync(path.join(dest, IDENTITY_FILE), "utf8").trim();
    } catch {
      continue;
    }
    let subs: string[];
    try {
      subs = fs.readdirSync(dest);
    } catch {
      continue;
    }
    for (const sub of subs) {
      const m = PROCESS_DIR.exec(sub);
      if (m === null) continue;
      const dir = path.join(dest, sub);
      if (holdsSegments(dir)) out.push({ dir, spec, index: Number(m[1]) });
    }
  }
  return out;
}

/**
 * Removes a process's disk queue directory once it holds no segment, then
 * its destination's directory too, once no process's queue there holds a
 * segment: the empty queues of other processes (ones that never got a
 * datapoint for the destination) go with it, unless a live process holds
 * one (its lock).
 */
export function removeEmptyQueue(dir: string): void {
  try {
    if (!removeIdleSpoolDir(dir)) return;
    const parent = path.dirname(dir);
    for (const sub of fs.readdirSync(parent)) {
      if (PROCESS_DIR.test(sub) && !removeIdleSpoolDir(path.join(parent, sub))) return;
    }
    fs.rmSync(parent, { recursive: true, force: true });
  } catch {}
}
