import { numericAddress, splitHostPort } from "./rules-address.ts";
import type { ListenTls, Receptor } from "./rules-config.ts";
import { describeToken, isBareWord, type Token } from "./rules-lexer.ts";
import { at, type ListenerEntry, oneOf, type ParseContext, q } from "./rules-parse-context.ts";

const ANY4 = `4:${"0".repeat(8)}`;
const ANY6 = `6:${"0".repeat(32)}`;

/** carbon-c-relay 3.8's TLS options after a listener's PEM file (protomin tls1.2, ciphers ...). */
const TLS_OPTIONS_38 = new Set(["protomin", "protomax", "ciphers", "ciphersuites"]);

/**
 * `listen type linemode [transport plain [ssl PEM]] RECEPTOR... ;` where a
 * receptor is `[host]:port`, `host`, `port` or `[v6]:port` with
 * `proto tcp|udp`, or a path with `proto unix`. `ssl PEM` makes the block's
 * receptors TLS, with the certificate and key in one PEM file; a UDP
 * receptor is then an error (carbon-c-relay: "cannot use UDP transport for
 * compressed/encrypted stream"). Compressed transports are refused, and so
 * is carbon-c-relay 3.8's `mtls` (and its TLS options after the PEM file):
 * polymur asks senders for a certificate with --tls-client-ca. As in
 * carbon-c-relay (`router_add_listener`), an address and port already
 * listened on with the same protocol is an error, a port alone covering
 * every IPv4 and IPv6 address.
 */
export function parseListen(ctx: ParseContext, kw: Token): void {
  ctx.expect("type", '"type"', 'after "listen"');
  ctx.expect("linemode", '"linemode"', 'after "listen type"');
  let tls: ListenTls | null = null;
  let after = 'after "listen type linemode"';
  if (ctx.accept("transport") !== null) {
    const t = ctx.take();
    if (t.kind === "gzip" || t.kind === "lz4" || t.kind === "snappy") {
      ctx.unsupported(t, `"transport ${t.raw}" (polymur listens for plain lines only)`);
    }
    if (t.kind !== "plain") {
      ctx.fail(
        t.pos,
        `expected "plain", "gzip", "lz4" or "snappy" after "transport", found ${describeToken(t)}`,
      );
    }
    after = 'after "transport plain"';
    const ssl = ctx.accept("ssl");
    if (ssl !== null) {
      const pem = ctx.expect(
        "string",
        "the PEM file (certificate and key)",
        'after "transport plain ssl"',
      );
      tls = { pemFile: pem.text, pos: ssl.pos };
      after = `after "ssl ${pem.text}"`;
      const opt = ctx.tok;
      if (opt.kind === "string" && !opt.quoted && TLS_OPTIONS_38.has(opt.text)) {
        ctx.unsupported(opt, `"${opt.text}" (carbon-c-relay 3.8's TLS options for a listener)`);
      }
    } else if (isBareWord(ctx.tok, "mtls")) {
      ctx.fail(
        ctx.tok.pos,
        '"transport plain mtls PEM" (carbon-c-relay 3.8: senders must present a certificate) is not supported by polymur: ' +
          'write "transport plain ssl PEM" and give the CA that signs the senders\' certificates with --tls-client-ca',
      );
    }
  } else if (ctx.tok.kind !== "string") {
    ctx.unexpected('"transport" or an address to listen on', 'after "listen type linemode"');
  }
  const receptors: Receptor[] = [];
  do {
    const addr = ctx.expect("string", "an address to listen on", after);
    ctx.expect("proto", '"proto"', `after ${q(addr.text)}`);
    const p = ctx.take();
    if (p.kind !== "tcp" && p.kind !== "udp" && p.kind !== "unix") {
      ctx.fail(p.pos, `expected "tcp", "udp" or "unix" after "proto", found ${describeToken(p)}`);
    }
    if (p.kind === "udp" && tls !== null) {
      ctx.fail(
        addr.pos,
        `UDP receptor ${q(addr.text)} in a TLS listen block ("ssl" at ${at(tls.pos)}): TLS runs over TCP only (carbon-c-relay: cannot use UDP transport for compressed/encrypted stream)`,
      );
    }
    receptors.push(p.kind === "unix" ? unixReceptor(ctx, addr) : netReceptor(ctx, addr, p.kind));
  } while (ctx.tok.kind === "string");
  if (ctx.tok.kind !== ";")
    ctx.unexpected(oneOf(["another address", '";"']), "in the listen statement");
  ctx.take();
  ctx.state.listen.push({ receptors, tls, pos: kw.pos });
}

function unixReceptor(ctx: ParseContext, t: Token): Receptor {
  const dup = ctx.state.listeners.find((l) => l.proto === "unix" && l.addresses[0] === t.text);
  if (dup !== undefined) {
    ctx.fail(t.pos, `duplicate listener: ${q(t.text)} is already listened on (at ${at(dup.pos)})`);
  }
  ctx.state.listeners.push({ proto: "unix", port: 0, addresses: [t.text], pos: t.pos });
  return { address: t.text, proto: "unix", pos: t.pos };
}

function netReceptor(ctx: ParseContext, t: Token, proto: "tcp" | "udp"): Receptor {
  // A port alone (digits only) is ":port" (conffile.y `receptor`).
  const text = /^[0-9]+$/.test(t.text) ? `:${t.text}` : t.text;
  const hp = splitHostPort(text);
  if (typeof hp === "string") ctx.fail(t.pos, `${hp} in listen address ${q(t.text)}`);
  const { host, port } = hp;
  const numeric = host === null ? null : numericAddress(host);
  // carbon-c-relay resolves a listener's host while it parses, polymur when it binds; a text
  // that cannot be a host name is refused here.
  if (host !== null && numeric === null && !/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$/.test(host)) {
    ctx.fail(
      t.pos,
      `invalid listener ${q(t.text)}: ${q(host)} is neither an IP address nor a host name`,
    );
  }
  const addresses = host === null ? [ANY4, ANY6] : [numeric ?? `n:${host}`];
  const entry: ListenerEntry = { proto, port, addresses, pos: t.pos };
  for (const l of ctx.state.listeners) {
    if (l.proto === proto && l.port === port && overlaps(l.addresses, addresses)) {
      ctx.fail(
        t.pos,
        `duplicate listener: ${proto} port ${port} on ${q(t.text)} is already listened on (at ${at(l.pos)})`,
      );
    }
  }
  ctx.state.listeners.push(entry);
  const address =
    host === null ? `:${port}` : host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  return { address, proto, pos: t.pos };
}

/** Same family and either side the any address, or the same address. */
function overlaps(a: readonly string[], b: readonly string[]): boolean {
  const any = (x: string): boolean => x === ANY4 || x === ANY6;
  return a.some((x) =>
    b.some((y) => x[0] === y[0] && (x === y || (x[0] !== "n" && (any(x) || any(y))))),
  );
}
