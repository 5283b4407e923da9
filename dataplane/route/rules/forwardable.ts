import { RulesError } from "./rules-config.ts";
import type { RulesProgram } from "./rules-program.ts";

/**
 * Refuses a program with targets the data path cannot forward to yet (file
 * clusters, UDP members), at their cluster's position. The router calls it
 * when it builds its table, and the control plane when it takes a file, so
 * that a node never refuses what the control plane accepted.
 */
export function refuseUnforwardable(program: RulesProgram): void {
  const config = program.config;
  for (const t of program.targets) {
    if (t.kind === "tcp") continue;
    const c = config.clusters.find((c) =>
      t.kind === "file" ? c.paths.includes(t.path) : c.members.some((m) => m.spec === t.spec.spec),
    );
    const what =
      t.kind === "file" ? `file cluster "${c?.name}"` : `member ${t.spec.spec} proto udp`;
    throw new RulesError(
      c?.pos ?? { file: config.files[0] ?? "", line: 1, column: 1 },
      `${what}: polymur does not forward to ${t.kind === "file" ? "files" : "UDP members"} yet`,
    );
  }
}
