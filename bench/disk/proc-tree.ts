/**
 * CPU and memory of a process and its descendants, read from /proc the way
 * relaybench reads them (Linux only): user+sys CPU including reaped children
 * (`/proc/<pid>/stat` fields 14-17) and VmRSS summed over the tree. Used by the
 * disk-queue scenarios for what relaybench does not measure itself (the disk
 * replay, and the relay's work after relaybench stopped counting).
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";

/** Clock ticks per second of /proc/<pid>/stat (`getconf CLK_TCK`, 100 on Linux). */
const CLK_TCK = (() => {
  const n = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

/** Fields of /proc/<pid>/stat after the command name (index 0 = state), or null when gone. */
function readStat(pid: number): string[] | null {
  try {
    const data = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return data.slice(data.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}

/** PIDs of root and every descendant (by parent PID), root first. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const st = readStat(Number(name));
    if (st === null) continue;
    const ppid = Number(st[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(name));
    children.set(ppid, list);
  }
  const tree: number[] = [];
  const todo = [root];
  while (todo.length > 0) {
    const pid = todo.pop()!;
    if (tree.includes(pid)) continue;
    tree.push(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return tree;
}

/** user+sys CPU seconds of the processes, their reaped children included. */
export function treeCpu(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const st = readStat(pid);
    // utime stime cutime cstime: fields 14..17 of stat, 11..14 after the name
    if (st) ticks += Number(st[11]) + Number(st[12]) + Number(st[13]) + Number(st[14]);
  }
  return ticks / CLK_TCK;
}

function statusKib(pid: number, key: string): number {
  try {
    for (const line of fs.readFileSync(`/proc/${pid}/status`, "utf8").split("\n")) {
      if (line.startsWith(`${key}:`)) return Number(line.split(/\s+/)[1]);
    }
  } catch {
    // gone
  }
  return 0;
}

/** VmRSS summed over the processes, in KiB (shared pages count once per process). */
export function treeRssKib(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + statusKib(pid, "VmRSS"), 0);
}

/** Busy and steal/nice CPU seconds of the whole machine (first line of /proc/stat). */
export function machineCpu(): { busy: number; nice: number } {
  const v = fs.readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1);
  const n = v.map(Number);
  // user nice system idle iowait irq softirq steal
  const busy = n[0]! + n[1]! + n[2]! + n[5]! + n[6]!;
  return { busy: busy / CLK_TCK, nice: n[1]! / CLK_TCK };
}
