import type { ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";

/** A child's stdout as JSON lines, one at a time, with a timeout (null: none came). */
export function jsonLines(
  child: ChildProcess,
): (timeoutMs: number) => Promise<Record<string, unknown> | null> {
  const queue: string[] = [];
  const waiting: ((line: string | null) => void)[] = [];
  let ended = false;
  const rl = createInterface({ input: child.stdout! });
  rl.on("line", (line) => {
    const w = waiting.shift();
    if (w) w(line);
    else queue.push(line);
  });
  rl.on("close", () => {
    ended = true;
    for (const w of waiting.splice(0)) w(null);
  });
  return async (timeoutMs) => {
    const line =
      queue.shift() ??
      (ended
        ? null
        : await new Promise<string | null>((resolve) => {
            const done = (l: string | null) => {
              clearTimeout(t);
              resolve(l);
            };
            const t = setTimeout(() => {
              const i = waiting.indexOf(done);
              if (i >= 0) waiting.splice(i, 1);
              resolve(null);
            }, timeoutMs);
            waiting.push(done);
          }));
    return line === null ? null : (JSON.parse(line) as Record<string, unknown>);
  };
}
