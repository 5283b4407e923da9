import { readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { UsageError } from "../../../common/errors.ts";
import { type OptionSpec, parseConfigFile } from "../../../common/options.ts";
import type { CommandIO } from "../command.ts";

/**
 * Where the control plane is and how to talk to it, from the flags, the
 * environment and the config file, in that order of precedence.
 */
export interface CtlSettings {
  /** The control plane's URL, http:// or https://, without a trailing slash; default DEFAULT_SERVER. */
  server: string;
  /** The admin credential; default "" (none: only calls without auth can be made). */
  token: string;
  /** The PEM CA certificate that signed an https control plane's certificate; default none (the system's CAs). */
  ca: Buffer | undefined;
  /** Per-call timeout in milliseconds; default 10 000. */
  timeoutMs: number;
  /** --json: machine-readable output on stdout; default false. */
  json: boolean;
}

export const DEFAULT_SERVER = "http://127.0.0.1:7000";

/** Seconds a call may take unless --timeout says otherwise. */
export const DEFAULT_TIMEOUT_SEC = 10;

const FILE_SPECS: readonly OptionSpec[] = ["server", "token", "ca", "timeout"].map((name) => ({
  name,
  type: "string",
  default: "",
  help: "",
}));

/** The config file: POLYMURCTL_CONFIG (explicit), else $XDG_CONFIG_HOME or ~/.config, polymur/polymurctl.conf. */
export function configPath(env: NodeJS.ProcessEnv): { path: string; explicit: boolean } {
  const explicit = env["POLYMURCTL_CONFIG"];
  if (explicit !== undefined && explicit !== "") return { path: explicit, explicit: true };
  const base = env["XDG_CONFIG_HOME"] || join(homedir(), ".config");
  return { path: join(base, "polymur", "polymurctl.conf"), explicit: false };
}

/** Flag > environment > config file > default. */
export function resolveSettings(
  values: { server?: string; token?: string; ca?: string; timeout?: string; json?: boolean },
  env: NodeJS.ProcessEnv,
  io: CommandIO,
): CtlSettings {
  const { path, explicit } = configPath(env);
  let file = new Map<string, string>();
  let fileExists = true;
  try {
    statSync(path);
  } catch {
    fileExists = false;
  }
  if (fileExists || explicit) {
    try {
      file = parseConfigFile(FILE_SPECS, path);
    } catch (err) {
      throw new UsageError(`${(err as Error).message} (POLYMURCTL_CONFIG)`);
    }
    if (file.has("token") && fileExists && (statSync(path).mode & 0o077) !== 0) {
      io.stderr.write(
        `polymurctl: warning: ${path} holds the admin credential and is readable by others; chmod 600 ${path}\n`,
      );
    }
  }
  const pick = (flag: string | undefined, envName: string, key: string): string =>
    flag ?? (env[envName] || undefined) ?? file.get(key) ?? "";
  if (values.token !== undefined) {
    io.stderr.write(
      "polymurctl: warning: --token is visible to other users (ps, shell history); prefer POLYMUR_ADMIN_TOKEN or the config file\n",
    );
  }
  let server = pick(values.server, "POLYMUR_SERVER", "server") || DEFAULT_SERVER;
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(server)) server = `http://${server}`;
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new UsageError(`--server "${server}" is not a URL such as ${DEFAULT_SERVER}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`--server must be http:// or https://; got "${server}"`);
  }
  const caPath = pick(values.ca, "POLYMUR_CA", "ca");
  let ca: Buffer | undefined;
  if (caPath !== "") {
    try {
      ca = readFileSync(caPath);
    } catch (err) {
      throw new UsageError(`--ca ${caPath}: ${(err as Error).message}`);
    }
  }
  const timeoutText =
    pick(values.timeout, "POLYMUR_TIMEOUT", "timeout") || String(DEFAULT_TIMEOUT_SEC);
  const timeout = Number(timeoutText.replace(/s$/, ""));
  if (!Number.isFinite(timeout) || timeout <= 0) {
    throw new UsageError(`--timeout must be a number of seconds; got "${timeoutText}"`);
  }
  return {
    server: server.replace(/\/+$/, ""),
    token: pick(values.token, "POLYMUR_ADMIN_TOKEN", "token"),
    ca,
    timeoutMs: timeout * 1000,
    json: values.json === true,
  };
}
