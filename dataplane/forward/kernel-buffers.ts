import { readFileSync } from "node:fs";

/**
 * What the kernels on the two ends of a TCP connection can hold that the
 * receiving program has not read yet: this host's send buffer, and the
 * peer's receive buffer. A peer that dies loses both, so the resend window
 * keeps that much (`--resend-window auto`).
 *
 * Linux grows a socket's buffers up to `net.ipv4.tcp_wmem` / `tcp_rmem`'s
 * maximum (polymur's own send buffer is bounded so: it does not set
 * SO_SNDBUF), or to twice `net.core.rmem_max` for a peer that sets SO_RCVBUF. polymur cannot see the peer's settings, so
 * its allowance for the peer's receive buffer is this host's limit: the
 * larger of `tcp_rmem`'s maximum and twice `rmem_max` (a peer tuned beyond
 * this host needs `--resend-window` set by hand). Where /proc cannot be read,
 * Linux's defaults are assumed: 4 MiB and 6 MiB.
 */
export interface KernelBuffers {
  /** Most bytes this host's kernel holds in one socket's send buffer. */
  sendBytes: number;
  /** Allowance for the peer's receive buffer. */
  peerReceiveBytes: number;
}

const LINUX_DEFAULTS: KernelBuffers = {
  sendBytes: 4 * 1024 * 1024,
  peerReceiveBytes: 6 * 1024 * 1024,
};

/** Reads the limits once, at first use. */
export function kernelBuffers(): KernelBuffers {
  cached ??= {
    // polymur does not set SO_SNDBUF: autotuning's maximum bounds its send buffer.
    sendBytes: maxOf("/proc/sys/net/ipv4/tcp_wmem") ?? LINUX_DEFAULTS.sendBytes,
    peerReceiveBytes: Math.max(
      maxOf("/proc/sys/net/ipv4/tcp_rmem") ?? LINUX_DEFAULTS.peerReceiveBytes,
      2 * (maxOf("/proc/sys/net/core/rmem_max") ?? 0),
    ),
  };
  return cached;
}

let cached: KernelBuffers | undefined;

/** The resend window that covers both buffers: `--resend-window auto`. */
export function kernelResendBytes(): number {
  const k = kernelBuffers();
  return k.sendBytes + k.peerReceiveBytes;
}

/** The last number in a /proc/sys file ("4096 16384 4194304" → 4194304); undefined if unreadable. */
function maxOf(path: string): number | undefined {
  try {
    const fields = readFileSync(path, "utf8").trim().split(/\s+/);
    const n = Number(fields[fields.length - 1]);
    return Number.isSafeInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}
