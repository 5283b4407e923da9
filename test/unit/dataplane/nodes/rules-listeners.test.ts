/**
 * What a relay.conf's listen blocks open (rules-listeners.ts), and how
 * buildRelayConfig combines them with the listener flags: the blocks replace
 * what they say (TCP, UDP, a unix socket, `ssl PEM`), the flags give the rest.
 * The rules files are real files under the system's temporary directory; the
 * PEM files are never read here (the TLS listener reads them when it starts).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseArgv, resolveOptions } from "../../../../common/options.ts";
import { DEFAULT_HANDSHAKE_TIMEOUT_MS } from "../../../../dataplane/ingest/listener-tls-settings.ts";
import { buildRelayConfig, RELAY_OPTIONS } from "../../../../dataplane/nodes/relay-options.ts";
import { rulesListeners } from "../../../../dataplane/nodes/rules-listeners.ts";
import { RulesError } from "../../../../dataplane/route/rules/rules-config.ts";
import { parseRules } from "../../../../dataplane/route/rules/rules-parser.ts";

const C = "cluster a forward 10.0.0.1:2003;\nmatch * send to a;\n";

const listeners = (text: string) => rulesListeners(parseRules(C + text, "relay.conf"));

function error(text: string): string {
  try {
    listeners(text);
  } catch (err) {
    if (err instanceof RulesError) return err.message;
    throw err;
  }
  throw new Error("no error");
}

const dir = mkdtempSync(join(tmpdir(), "polymur-rules-listeners-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

/** buildRelayConfig for `--rules FILE` (FILE holding `text`) and `argv`. */
function relay(text: string, argv: string[] = []) {
  const path = join(dir, `relay-${files++}.conf`);
  writeFileSync(path, C + text);
  const { flags } = parseArgv(RELAY_OPTIONS, ["--rules", path, ...argv]);
  return buildRelayConfig(resolveOptions(RELAY_OPTIONS, flags, {}, new Map()));
}

describe("rulesListeners", () => {
  it("is null without listen blocks", () => {
    expect(listeners("")).toBeNull();
  });

  it("takes a unix socket receptor and the TCP receptor's ssl PEM", () => {
    expect(
      listeners(
        "listen type linemode transport plain ssl /etc/relay/both.pem 127.0.0.1:2103 proto tcp;\nlisten type linemode 2104 proto udp /run/relay.sock proto unix;",
      ),
    ).toEqual({
      listen: { host: "127.0.0.1", port: 2103 },
      udp: { host: "0.0.0.0", port: 2104 },
      unix: "/run/relay.sock",
      tlsPem: "/etc/relay/both.pem",
    });
    expect(listeners("listen type linemode 2103 proto tcp;")).toEqual({
      listen: { host: "0.0.0.0", port: 2103 },
      udp: null,
      unix: null,
      tlsPem: null,
    });
  });

  it("refuses a second unix socket receptor, where it is written", () => {
    expect(
      error(
        "listen type linemode 2103 proto tcp /run/a.sock proto unix;\nlisten type linemode /run/b.sock proto unix;",
      ),
    ).toBe(
      'relay.conf:4:22: a second unix socket receptor "/run/b.sock": polymur listens on one unix socket (the first: "/run/a.sock")',
    );
  });

  it("refuses a unix socket receptor in a TLS block (carbon-c-relay would speak TLS on it)", () => {
    expect(
      error(
        "listen type linemode transport plain ssl x.pem 2103 proto tcp /run/a.sock proto unix;",
      ),
    ).toBe(
      'relay.conf:3:63: unix socket receptor "/run/a.sock" in a TLS listen block ("ssl" at relay.conf:3:38): polymur\'s unix socket takes cleartext lines only',
    );
  });

  it("still needs one TCP receptor, and only one", () => {
    expect(error("listen type linemode /run/a.sock proto unix;")).toBe(
      "relay.conf:3:22: the listen blocks have no TCP receptor: polymur needs one",
    );
    expect(
      error(
        "listen type linemode transport plain ssl x.pem 2103 proto tcp;\nlisten type linemode 127.0.0.1:2104 proto tcp;",
      ),
    ).toBe(
      'relay.conf:4:22: a second TCP receptor "127.0.0.1:2104": polymur listens on one TCP address (the first: 0.0.0.0:2103)',
    );
  });
});

describe("buildRelayConfig with listen blocks", () => {
  it("listens on the blocks' unix socket instead of --unix-socket", () => {
    const r = relay("listen type linemode 2103 proto tcp /run/relay.sock proto unix;", [
      "--unix-socket",
      "/run/flag.sock",
    ]);
    expect([r.listen, r.udp, r.unix]).toEqual([
      { host: "0.0.0.0", port: 2103 },
      null,
      "/run/relay.sock",
    ]);
  });

  it("keeps --unix-socket when the blocks have no unix receptor", () => {
    expect(
      relay("listen type linemode 2103 proto tcp;", ["--unix-socket", "/run/flag.sock"]).unix,
    ).toBe("/run/flag.sock");
    expect(relay("listen type linemode 2103 proto tcp;").unix).toBeNull();
  });

  it("makes the listeners TLS with the block's PEM as certificate and key, the flags giving the rest", () => {
    expect(
      relay("listen type linemode transport plain ssl /etc/relay/both.pem 2103 proto tcp;").tls,
    ).toEqual({
      certFile: "/etc/relay/both.pem",
      keyFile: "/etc/relay/both.pem",
      clientCaFile: null,
      handshakeTimeoutMs: DEFAULT_HANDSHAKE_TIMEOUT_MS,
    });
    // --tls-client-ca alone would be an error; with the block's PEM it asks senders for certificates.
    expect(
      relay("listen type linemode transport plain ssl /etc/relay/both.pem 2103 proto tcp;", [
        "--tls-client-ca",
        "/etc/relay/ca.pem",
        "--tls-handshake-timeout",
        "3s",
        "--tls-cert",
        "/etc/flag/cert.pem",
        "--tls-key",
        "/etc/flag/key.pem",
      ]).tls,
    ).toEqual({
      certFile: "/etc/relay/both.pem",
      keyFile: "/etc/relay/both.pem",
      clientCaFile: "/etc/relay/ca.pem",
      handshakeTimeoutMs: 3000,
    });
  });

  it("leaves TLS to the flags when the blocks have no ssl", () => {
    const flags = ["--tls-cert", "/etc/flag/cert.pem", "--tls-key", "/etc/flag/key.pem"];
    expect(relay("listen type linemode 2103 proto tcp;", flags).tls).toMatchObject({
      certFile: "/etc/flag/cert.pem",
      keyFile: "/etc/flag/key.pem",
    });
    expect(relay("listen type linemode 2103 proto tcp;").tls).toBeNull();
    expect(relay("", flags).tls).toMatchObject({ certFile: "/etc/flag/cert.pem" });
  });

  it("still checks the handshake timeout flag with the block's PEM", () => {
    expect(() =>
      relay("listen type linemode transport plain ssl /x.pem 2103 proto tcp;", [
        "--tls-handshake-timeout",
        "0",
      ]),
    ).toThrow("--tls-handshake-timeout must be more than 0");
  });
});
