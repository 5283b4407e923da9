import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  configPath,
  DEFAULT_SERVER,
  resolveSettings,
} from "../../../../../cli/polymurctl/client/settings.ts";
import { UsageError } from "../../../../../common/errors.ts";
import { captureIO } from "../io.ts";

describe("polymurctl settings", () => {
  let dir: string;
  /** The default config file under XDG_CONFIG_HOME = dir. */
  let defaultFile: string;
  let env: NodeJS.ProcessEnv;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "polymurctl-settings-"));
    defaultFile = join(dir, "polymur", "polymurctl.conf");
    env = { XDG_CONFIG_HOME: dir };
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  function writeConfig(text: string, mode = 0o600, path = defaultFile): string {
    mkdirSync(join(path, ".."), { recursive: true });
    writeFileSync(path, text);
    chmodSync(path, mode);
    return path;
  }

  it("finds the config file: POLYMURCTL_CONFIG, else XDG_CONFIG_HOME, else ~/.config", () => {
    expect(configPath({ POLYMURCTL_CONFIG: "/etc/ctl.conf", XDG_CONFIG_HOME: dir })).toEqual({
      path: "/etc/ctl.conf",
      explicit: true,
    });
    expect(configPath({ POLYMURCTL_CONFIG: "", XDG_CONFIG_HOME: dir })).toEqual({
      path: defaultFile,
      explicit: false,
    });
    expect(configPath({}).path).toMatch(/\/\.config\/polymur\/polymurctl\.conf$/);
  });

  it("defaults: the local control plane, no credential, 10 s, no --json", () => {
    const c = captureIO();
    expect(resolveSettings({}, env, c.io)).toEqual({
      server: DEFAULT_SERVER,
      token: "",
      ca: undefined,
      timeoutMs: 10_000,
      json: false,
    });
    expect(c.stderr()).toBe("");
  });

  it("takes the flag over the environment over the config file over the default", () => {
    writeConfig("server = http://file:7000\ntoken = file-token\ntimeout = 3\n");
    const full = {
      ...env,
      POLYMUR_SERVER: "http://env:7000",
      POLYMUR_ADMIN_TOKEN: "env-token",
      POLYMUR_TIMEOUT: "2",
    };
    const c = captureIO();
    const flags = resolveSettings(
      { server: "http://flag:7000", token: "flag-token", timeout: "1", json: true },
      full,
      c.io,
    );
    expect(flags).toMatchObject({
      server: "http://flag:7000",
      token: "flag-token",
      timeoutMs: 1000,
      json: true,
    });
    expect(resolveSettings({}, full, captureIO().io)).toMatchObject({
      server: "http://env:7000",
      token: "env-token",
      timeoutMs: 2000,
    });
    expect(resolveSettings({}, env, captureIO().io)).toMatchObject({
      server: "http://file:7000",
      token: "file-token",
      timeoutMs: 3000,
    });
    // An empty variable is no setting: the config file still counts.
    expect(
      resolveSettings({}, { ...env, POLYMUR_SERVER: "", POLYMUR_ADMIN_TOKEN: "" }, captureIO().io),
    ).toMatchObject({ server: "http://file:7000", token: "file-token" });
    // --token warns that it shows in ps.
    expect(c.stderr()).toContain("polymurctl: warning: --token is visible to other users");
  });

  it("reads the CA named by a flag, the environment or the config file", () => {
    const ca = join(dir, "ca.pem");
    writeFileSync(ca, "-----BEGIN CERTIFICATE-----\n");
    expect(resolveSettings({ ca }, env, captureIO().io).ca?.toString()).toBe(
      "-----BEGIN CERTIFICATE-----\n",
    );
    expect(resolveSettings({}, { ...env, POLYMUR_CA: ca }, captureIO().io).ca).toBeInstanceOf(
      Buffer,
    );
    writeConfig(`ca = ${ca}\n`);
    expect(resolveSettings({}, env, captureIO().io).ca).toBeInstanceOf(Buffer);
    expect(() => resolveSettings({ ca: join(dir, "missing.pem") }, env, captureIO().io)).toThrow(
      /^--ca .*missing\.pem: ENOENT/,
    );
  });

  it("normalizes the server URL and the timeout", () => {
    const io = captureIO().io;
    expect(resolveSettings({ server: "cp.example:7000" }, env, io).server).toBe(
      "http://cp.example:7000",
    );
    expect(resolveSettings({ server: "https://cp.example:7443//" }, env, io).server).toBe(
      "https://cp.example:7443",
    );
    expect(resolveSettings({ timeout: "2.5s" }, env, io).timeoutMs).toBe(2500);
  });

  it("refuses a server that is not http(s) and a timeout that is not seconds", () => {
    const io = captureIO().io;
    expect(() => resolveSettings({ server: "ftp://x" }, env, io)).toThrow(
      new UsageError('--server must be http:// or https://; got "ftp://x"'),
    );
    expect(() => resolveSettings({ server: "http://[bad" }, env, io)).toThrow(
      /^--server "http:\/\/\[bad" is not a URL/,
    );
    for (const t of ["abc", "0", "-1"]) {
      expect(() => resolveSettings({ timeout: t }, env, io)).toThrow(
        new UsageError(`--timeout must be a number of seconds; got "${t}"`),
      );
    }
    expect(() => resolveSettings({ timeout: "abc" }, env, io)).toThrow(UsageError);
  });

  it("warns when a config file that holds the credential is readable by others", () => {
    writeConfig("token = secret\n", 0o644);
    const loose = captureIO();
    expect(resolveSettings({}, env, loose.io).token).toBe("secret");
    expect(loose.stderr()).toBe(
      `polymurctl: warning: ${defaultFile} holds the admin credential and is readable by others; chmod 600 ${defaultFile}\n`,
    );

    chmodSync(defaultFile, 0o600);
    const tight = captureIO();
    resolveSettings({}, env, tight.io);
    expect(tight.stderr()).toBe("");

    writeConfig("server = http://file:7000\n", 0o644); // no credential: nothing to warn about
    const noToken = captureIO();
    resolveSettings({}, env, noToken.io);
    expect(noToken.stderr()).toBe("");
  });

  it("turns config file errors into usage errors that name POLYMURCTL_CONFIG", () => {
    const io = captureIO().io;
    writeConfig("server http://x\n");
    expect(() => resolveSettings({}, env, io)).toThrow(
      new UsageError(`${defaultFile}:1: expected "name = value" (POLYMURCTL_CONFIG)`),
    );
    writeConfig("# comment\nserver = http://x\nbogus = 1\n");
    expect(() => resolveSettings({}, env, io)).toThrow(
      new UsageError(`${defaultFile}:3: unknown option "bogus" (POLYMURCTL_CONFIG)`),
    );
    // A missing default file is no error; a missing explicit one is.
    rmSync(defaultFile);
    expect(resolveSettings({}, env, io).server).toBe(DEFAULT_SERVER);
    const explicit = join(dir, "nope.conf");
    let thrown: unknown;
    try {
      resolveSettings({}, { ...env, POLYMURCTL_CONFIG: explicit }, io);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(UsageError);
    expect((thrown as Error).message).toMatch(
      new RegExp(`^cannot read config file ${explicit}: ENOENT.* \\(POLYMURCTL_CONFIG\\)$`),
    );
  });
});
