import { numericAddress, splitHostPort } from "./rules-address.ts";
import type { Receptor } from "./rules-config.ts";
import { describeToken, type Token } from "./rules-lexer.ts";
import { at, type ListenerEntry, oneOf, type ParseContext, q } from "./rules-parse-context.ts";

const ANY4 = `4:${"0".repeat(8)}`;
const ANY6 = `6:${"0".repeat(32)}`;

/**
 * `listen type linemode [transport plain] RECEPTOR... ;` where a receptor is
 * `[host]:port`, `host`, `port` or `[v6]:port` with `proto tcp|udp`, or a
 * path with `proto unix`. Compressed or TLS transports are refused: polymur
 * listens for plain lines only. As in carbon-c-relay
 * (`router_add_listener`), an address and port already listened on with the
 * same protocol is an error, a port alone covering every IPv4 and IPv6
 * address.
 */
export function parseListen(ctx: ParseContext, kw: Token): void {
  ctx.expect("type", '"type"', 'after "listen"');
  ctx.expect("linemode", '"linemode"', 'after "listen type"');
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
    const ssl = ctx.accept("ssl");
    if (ssl !== null) ctx.unsupported(ssl, '"ssl" (a TLS listener)');
  } else if (ctx.tok.kind !== "string") {
    ctx.unexpected('"transport" or an address to listen on', 'after "listen type linemode"');
  }
  const receptors: Receptor[] = [];
  do {
    const addr = ctx.expect("string", "an address to listen on", 'after "transport plain"');
    ctx.expect("proto", '"proto"', `after ${q(addr.text)}`);
    const p = ctx.take();
    if (p.kind !== "tcp" && p.kind !== "udp" && p.kind !== "unix") {
      ctx.fail(p.pos, `expected "tcp", "udp" or "unix" after "proto", found ${describeToken(p)}`);
    }
    receptors.push(p.kind === "unix" ? unixReceptor(ctx, addr) : netReceptor(ctx, addr, p.kind));
  } while (ctx.tok.kind === "string");
  if (ctx.tok.kind !== ";")
    ctx.unexpected(oneOf(["another address", '";"']), "in the listen statement");
  ctx.take();
  ctx.state.listen.push({ receptors, pos: kw.pos });
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
