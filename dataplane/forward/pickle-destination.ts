import {
  type DestinationLink,
  type DestinationTransport,
  tcpTransport,
  type WriteDone,
} from "./destination-link.ts";
import type { DestinationSpec } from "./destination-spec.ts";
import type { DestinationTlsSettings } from "./destination-tls.ts";
import { encodePickleFrames } from "./pickle-encoder.ts";
import { tlsTransport } from "./tls-transport.ts";

/**
 * The transport of a `pickle://` destination: TCP to `spec`, as
 * tcpTransport (or `over`: TLS for `pickle+tls://`), with each write's lines
 * sent as carbon pickle frames
 * (pickle-encoder.ts) for a carbon-cache's pickle receiver. The queue,
 * resend window, disk part and accounting are a plaintext destination's:
 * they hold plaintext lines, and a line resent over a new connection is
 * encoded again. A line that cannot be encoded (it does not parse, which
 * validation upstream rules out) completes its write as not sent: counted
 * as dropped, reason send_failed.
 */
export function pickleTransport(
  spec: DestinationSpec,
  over: DestinationTransport = tcpTransport(spec),
): DestinationTransport {
  return {
    name: spec,
    resends: true,
    open: () => new PickleLink(over.open()),
  };
}

/** A TCP (or TLS) link whose writes are lines, sent as pickle frames. */
class PickleLink implements DestinationLink {
  readonly #link: DestinationLink;

  constructor(link: DestinationLink) {
    this.#link = link;
  }

  get destroyed(): boolean {
    return this.#link.destroyed;
  }

  /** Writes the chunk's lines as pickle frames; `done` completes all of them at once. */
  write(chunk: Buffer, done: WriteDone): boolean {
    const { bytes, skipped } = encodePickleFrames(chunk);
    // Written even when empty, so that completions keep their order.
    if (skipped === 0) return this.#link.write(bytes, done);
    return this.#link.write(bytes, (err) => done(err, skipped));
  }

  end(): void {
    this.#link.end();
  }

  destroy(err?: Error): void {
    this.#link.destroy(err);
  }

  once(event: "connect" | "close", listener: () => void): unknown {
    return this.#link.once(event, listener);
  }

  on(event: "drain", listener: () => void): unknown;
  on(event: "error", listener: (err: Error) => void): unknown;
  on(event: "drain" | "error", listener: ((err: Error) => void) & (() => void)): unknown {
    return event === "drain" ? this.#link.on(event, listener) : this.#link.on(event, listener);
  }
}

/**
 * How a destination spec is reached: over TLS for `tls://` and
 * `pickle+tls://` (with `tls`: CA, client certificate, server name; null =
 * the defaults), TCP otherwise; pickle frames for `pickle://` and
 * `pickle+tls://`, plaintext lines otherwise.
 */
export function specTransport(
  spec: DestinationSpec,
  tls: DestinationTlsSettings | null,
): DestinationTransport {
  const link = spec.tls ? tlsTransport(spec, tls) : tcpTransport(spec);
  return spec.protocol === "pickle" ? pickleTransport(spec, link) : link;
}
