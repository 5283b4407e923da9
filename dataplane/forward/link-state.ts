import type { DestinationLink } from "./destination-link.ts";

/**
 * The connection to the peer. Each state holds what exists only in it, so a
 * socket, a reconnect timer and the state name cannot disagree.
 */
export type Link =
  /** A socket is connecting (writes wait: nothing is written before "connect"). */
  | { readonly kind: "connecting"; readonly socket: DestinationLink }
  | { readonly kind: "connected"; readonly socket: DestinationLink }
  /** Waiting to reconnect after `timer`; null before start(). */
  | { readonly kind: "backoff"; readonly timer: NodeJS.Timeout | null };

/**
 * The destination's state: a link, or draining over a link (drain() was
 * called: what is queued is delivered, writing at once, and the destination
 * closes when nothing is left or at the deadline), or closed (no link, no
 * queue; everything offered is dropped). Its `kind` is the public state name.
 */
export type LinkState =
  | Link
  | { readonly kind: "draining"; readonly link: Link }
  | { readonly kind: "closed" };

/** The closed state (one object: it holds nothing). */
export const CLOSED: LinkState = { kind: "closed" };

/** The link of `state`, a draining one's included; the closed state has none. */
export function linkOf(state: LinkState): Link | null {
  if (state.kind === "closed") return null;
  return state.kind === "draining" ? state.link : state;
}

/** The socket of the link of `state`, connecting or connected; null in backoff and once closed. */
export function socketOf(state: LinkState): DestinationLink | null {
  const link = linkOf(state);
  return link !== null && (link.kind === "connecting" || link.kind === "connected")
    ? link.socket
    : null;
}
