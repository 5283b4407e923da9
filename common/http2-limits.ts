/**
 * Concurrent streams one HTTP/2 connection may open on polymur's servers
 * (the gateway, the control plane): a proxy or a node needs one or two, a
 * polymurctl call one, so that one caller, authenticated or not, cannot hold
 * unbounded streams open. Beyond it the client's new streams wait (it is a
 * SETTINGS value the client honours) or are refused.
 */
export const MAX_CONCURRENT_STREAMS = 100;

/**
 * How much of its own unsent data a proxy's HTTP/2 session may hold, in MB
 * (Node's `maxSessionMemory`, 10 by default). Over it, Node refuses the
 * gateway's answer, so a proxy with an over-large batch would see its own
 * ENHANCE_YOUR_CALM instead of the gateway's RESOURCE_EXHAUSTED.
 */
export const CLIENT_SESSION_MEMORY_MB = 64;
