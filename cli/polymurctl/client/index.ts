/**
 * What every polymurctl command that talks to the control plane shares:
 * where it is (--server, POLYMUR_SERVER, the config file: settings.ts), the admin
 * credential and TLS (connection.ts), its arguments and --help (args.ts, scope.ts),
 * tables and --json (output.ts), and how failures become exit codes and one-line
 * reasons (failure.ts, exit.ts).
 *
 * Exit codes: 0 ok, 1 the control plane said no, 2 usage or configuration,
 * 3 the control plane could not be reached, 4 (--wait) nodes did not apply
 * the change in time.
 */
export { COMMON_HELP, COMMON_OPTIONS, commandArgs, expectedVersion } from "./args.ts";
export type { CtlConnection } from "./connection.ts";
export { EXIT } from "./exit.ts";
export type { Failure } from "./failure.ts";
export { fail, isoTime, printJson, table } from "./output.ts";
export type { ChangeMade, RolloutOutcome } from "./rollout.ts";
export {
  finishChange,
  normalizeWait,
  WAIT_HELP,
  WAIT_OPTION,
  waitForRollout,
  waitTimeoutMs,
} from "./rollout.ts";
export { runWithConnection } from "./run-with-connection.ts";
export type { ScopeArg } from "./scope.ts";
export { scopeArg, scopeJson, scopeText } from "./scope.ts";
export type { CtlSettings } from "./settings.ts";
