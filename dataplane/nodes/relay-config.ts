import type { ListenerConfig } from "../ingest/line-listener.ts";
import type { RouterConfig } from "../route/router.ts";

/**
 * Everything a relay process needs, already parsed and validated: where it
 * listens (ingest) and where lines go (route, forward). Produced by
 * relay-options.ts from flags, POLYMUR_* variables and a config file; plain
 * data, so it can be sent to worker processes.
 */
export type RelayConfig = ListenerConfig & RouterConfig;
