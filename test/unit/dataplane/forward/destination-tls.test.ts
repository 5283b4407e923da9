import { copyFileSync, mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCode } from "../../../../common/errors.ts";
import { type RawOptions, resolveOptions } from "../../../../common/options.ts";
import {
  DEFAULT_DESTINATION_TLS,
  DESTINATION_TLS_OPTIONS,
  DestinationTlsFiles,
  destinationTlsFiles,
  destinationTlsSettings,
} from "../../../../dataplane/forward/destination-tls.ts";
import { createTestPki, type TestPki } from "../../../fixtures/tls.ts";

let pki: TestPki;
beforeAll(() => {
  pki = createTestPki();
});
afterAll(() => pki.close());

/** The options as flags would set them (the rest at their defaults). */
function options(flags: Record<string, string>, env: NodeJS.ProcessEnv = {}): RawOptions {
  return resolveOptions(DESTINATION_TLS_OPTIONS, new Map(Object.entries(flags)), env, new Map());
}

describe("destinationTlsSettings", () => {
  it("nothing set: the defaults (Node's trust store, no client certificate, the host's name)", () => {
    expect(destinationTlsSettings(options({}))).toBe(DEFAULT_DESTINATION_TLS);
    expect(DEFAULT_DESTINATION_TLS).toEqual({
      caFile: null,
      certFile: null,
      keyFile: null,
      serverName: null,
    });
  });

  it("takes the paths and the server name as given", () => {
    expect(
      destinationTlsSettings(
        options({
          "destination-tls-ca": pki.caFile,
          "destination-tls-cert": pki.client.certFile,
          "destination-tls-key": pki.client.keyFile,
          "destination-tls-server-name": "relay.example.org",
        }),
      ),
    ).toEqual({
      caFile: pki.caFile,
      certFile: pki.client.certFile,
      keyFile: pki.client.keyFile,
      serverName: "relay.example.org",
    });
    expect(
      destinationTlsSettings(options({ "destination-tls-server-name": "10.0.0.1" })),
    ).toMatchObject({ caFile: null, serverName: "10.0.0.1" });
  });

  it("a certificate and key in one file", () => {
    const s = destinationTlsSettings(
      options({
        "destination-tls-cert": pki.combinedFile,
        "destination-tls-key": pki.combinedFile,
      }),
    );
    expect(s).toMatchObject({ certFile: pki.combinedFile, keyFile: pki.combinedFile });
  });

  it("refuses a certificate without its key and a key without its certificate, naming where it was set", () => {
    expect(() =>
      destinationTlsSettings(options({ "destination-tls-cert": pki.client.certFile })),
    ).toThrow("--destination-tls-cert needs --destination-tls-key");
    expect(() =>
      destinationTlsSettings(options({}, { POLYMUR_DESTINATION_TLS_KEY: pki.client.keyFile })),
    ).toThrow("POLYMUR_DESTINATION_TLS_KEY needs --destination-tls-cert");
  });

  it("refuses files that cannot be read or are not what they should be, at start, as configuration errors", () => {
    const missing = join(pki.dir, "no-such.pem");
    const cases: Array<[Record<string, string>, RegExp]> = [
      [
        { "destination-tls-ca": missing },
        /cannot read --destination-tls-ca .*no-such\.pem: ENOENT/,
      ],
      [{ "destination-tls-ca": pki.keyFile }, /--destination-tls-ca .* holds no PEM certificate/],
      [
        { "destination-tls-cert": pki.client.certFile, "destination-tls-key": pki.caFile },
        /--destination-tls-key .* holds no PEM private key/,
      ],
      [
        { "destination-tls-cert": pki.client.certFile, "destination-tls-key": pki.keyFile },
        /do not make a TLS context: .*key values mismatch/,
      ],
    ];
    for (const [flags, message] of cases) {
      let err: unknown;
      try {
        destinationTlsSettings(options(flags));
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(flags)).toMatchObject({ code: ErrorCode.Config });
      expect((err as Error).message).toMatch(message);
    }
  });

  it("refuses a server name with whitespace or a slash", () => {
    for (const name of ["a b", "https://x", " "]) {
      expect(() =>
        destinationTlsSettings(options({ "destination-tls-server-name": name })),
      ).toThrow("--destination-tls-server-name must be a host name or an IP address");
    }
  });

  it("the helps name the schemes they apply to and say the files are re-read", () => {
    for (const o of DESTINATION_TLS_OPTIONS.filter((x) => x.name !== "destination-tls-key")) {
      expect(o.help).toContain("tls:// and pickle+tls://");
    }
    for (const o of DESTINATION_TLS_OPTIONS.filter(
      (x) => x.name.endsWith("-ca") || x.name.endsWith("-cert") || x.name.endsWith("-key"),
    )) {
      expect(o.help).toContain("re-read when it changes");
    }
  });
});

describe("DestinationTlsFiles", () => {
  it("keeps its context while the files stay as they were, and makes a new one when one changes", () => {
    const dir = mkdtempSync(join(tmpdir(), "polymur-dest-tls-files-"));
    try {
      const caFile = join(dir, "ca.pem");
      copyFileSync(pki.caFile, caFile);
      const files = new DestinationTlsFiles({ ...DEFAULT_DESTINATION_TLS, caFile });
      const first = files.context();
      expect(files.context()).toBe(first);
      // Rotated by a rename over it (a new inode), as most tools do.
      const next = join(dir, "ca.pem.new");
      copyFileSync(pki.otherCaFile, next);
      renameSync(next, caFile);
      const second = files.context();
      expect(second).not.toBe(first);
      expect(files.context()).toBe(second);
      // Gone: the attempt fails, saying why; back: a context again.
      unlinkSync(caFile);
      expect(() => files.context()).toThrow(/cannot read --destination-tls-ca .*ENOENT/);
      writeFileSync(caFile, pki.ca);
      expect(files.context()).not.toBe(second);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("one per settings object: the destinations of a process share it", () => {
    const s = { ...DEFAULT_DESTINATION_TLS, caFile: pki.caFile };
    expect(destinationTlsFiles(s)).toBe(destinationTlsFiles(s));
    expect(destinationTlsFiles(null)).toBe(destinationTlsFiles(DEFAULT_DESTINATION_TLS));
    expect(destinationTlsFiles(null).settings).toBe(DEFAULT_DESTINATION_TLS);
  });
});
