import { UsageError } from "../../../common/errors.ts";
import {
  HASH_ALGOS,
  HASH_COMPATS,
  HASH_ROUTER_KINDS,
  type HashAlgo,
  type HashCompat,
  type HashKeyNormalize,
  type HashRouterKind,
  type HashRouterOptions,
} from "../../../dataplane/route/hash/hash-router.ts";

/**
 * The ring options `polymurctl hash` and `polymurctl hash moves` share, named as
 * `polymur relay` and `polymurctl route set` name them, with their old names
 * here and the values each takes.
 */
export const RING_OPTIONS = {
  compat: { type: "string" },
  hash: { type: "string" },
  replication: { type: "string" },
  "diverse-replicas": { type: "string" },
  router: { type: "string" },
  "hash-normalize": { type: "string" },
} as const;

/** Old spellings (before polymur's names were one vocabulary: --algo, --normalize). */
export const RING_ALIASES = { algo: "hash", normalize: "hash-normalize" } as const;

/** The values each ring option takes (checked by checkArgv, offered by completion). */
export const RING_CHOICES = {
  compat: HASH_COMPATS,
  hash: HASH_ALGOS,
  router: HASH_ROUTER_KINDS,
  "hash-normalize": ["none", "sorted-tags", "cleanse"],
  "diverse-replicas": ["true", "false"],
} as const;

/** The parsed values of RING_OPTIONS (each already checked against RING_CHOICES). */
export interface RingOptionValues {
  compat?: string | undefined;
  hash?: string | undefined;
  replication?: string | undefined;
  "diverse-replicas"?: string | undefined;
  router?: string | undefined;
  "hash-normalize"?: string | undefined;
}

/** A replication count as an option gives it; UsageError unless a whole number. */
export function replicationArg(flag: string, text: string): number {
  if (!/^[0-9]+$/.test(text)) {
    throw new UsageError(`${flag} must be a whole number; got "${text}"`);
  }
  return Number(text);
}

/** The router options the ring options ask for (unset ones left to the router's defaults). */
export function ringOptions(values: RingOptionValues): HashRouterOptions {
  const options: HashRouterOptions = {};
  if (values.compat !== undefined) options.compat = values.compat as HashCompat;
  if (values.hash !== undefined) options.algo = values.hash as HashAlgo;
  if (values.router !== undefined) options.router = values.router as HashRouterKind;
  const normalize = values["hash-normalize"];
  if (normalize !== undefined) options.normalize = normalize as HashKeyNormalize;
  if (values.replication !== undefined) {
    options.replication = replicationArg("--replication", values.replication);
  }
  const diverse = values["diverse-replicas"];
  if (diverse !== undefined) options.diverseReplicas = diverse === "true";
  return options;
}
