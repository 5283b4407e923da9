import type { connectNodeAdapter } from "@connectrpc/connect-node";
import { drainWhenAnswered } from "../../common/drain-when-answered.ts";
import { CONSOLE_HTML } from "./console-page.ts";
import { CONSOLE_SCRIPT } from "./console-script.ts";
import { CONSOLE_STYLE } from "./console-style.ts";

type NodeHandlerFn = ReturnType<typeof connectNodeAdapter>;
type NodeRequest = Parameters<NodeHandlerFn>[0];
type NodeResponse = Parameters<NodeHandlerFn>[1];

/** Where the console is served: its page, and its script, style and icon beside it. */
export const CONSOLE_PATH = "/console/";

/**
 * The console's Content-Security-Policy: nothing but its own script, style
 * and icon from the control plane itself, calls to the control plane's own
 * API only, no inline script or style, no frames, no forms posted anywhere,
 * and Trusted Types (the page builds its DOM from text nodes, never HTML
 * strings, so anything that would parse markup is refused).
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join("; ");

const ICON =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#1f6f8b"/><path d="M3 11 6 6l3 3 4-6" stroke="#fff" stroke-width="1.6" fill="none"/></svg>\n';

interface Asset {
  readonly type: string;
  readonly body: Buffer;
}

const ASSETS: ReadonlyMap<string, Asset> = new Map([
  [CONSOLE_PATH, { type: "text/html; charset=utf-8", body: Buffer.from(CONSOLE_HTML) }],
  [
    `${CONSOLE_PATH}console.js`,
    { type: "text/javascript; charset=utf-8", body: Buffer.from(CONSOLE_SCRIPT) },
  ],
  [
    `${CONSOLE_PATH}console.css`,
    { type: "text/css; charset=utf-8", body: Buffer.from(CONSOLE_STYLE) },
  ],
  [`${CONSOLE_PATH}favicon.svg`, { type: "image/svg+xml", body: Buffer.from(ICON) }],
]);

/** Headers on every answer of the console's paths. */
const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy": CONSOLE_CSP,
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  "cache-control": "no-cache",
};

/**
 * The web console's static files, all held in memory (no file is read, and
 * nothing is fetched from anywhere else): GET or HEAD of `/console/` and the
 * files beside it; `/` and `/console` redirect to `/console/`. Returns false
 * for any other path, which the caller serves (the API). The page reads the
 * same ControlService API polymurctl uses, with the admin credential the
 * operator types into it; these files themselves are open, as they hold no
 * data.
 */
export function createConsoleHandler(): (req: NodeRequest, res: NodeResponse) => boolean {
  return (req, res) => {
    const path = (req.url ?? "").split("?", 1)[0] ?? "";
    const read = req.method === "GET" || req.method === "HEAD";
    const isRedirect = read && (path === "/" || path === "/console");
    if (!isRedirect && !path.startsWith(CONSOLE_PATH)) return false;
    // Answered without reading a body: see drainWhenAnswered.
    drainWhenAnswered(req);
    if (!read) {
      answer(res, 405, { allow: "GET, HEAD" }, "method not allowed\n");
      return true;
    }
    if (isRedirect) {
      answer(res, 308, { location: CONSOLE_PATH }, `see ${CONSOLE_PATH}\n`);
      return true;
    }
    const asset = ASSETS.get(path);
    if (asset === undefined) {
      answer(res, 404, {}, "not found\n");
      return true;
    }
    answer(res, 200, { "content-type": asset.type }, asset.body, req.method === "HEAD");
    return true;
  };
}

function answer(
  res: NodeResponse,
  status: number,
  headers: Record<string, string>,
  body: string | Buffer,
  headOnly = false,
): void {
  const bytes = typeof body === "string" ? Buffer.from(body) : body;
  const type = typeof body === "string" ? { "content-type": "text/plain; charset=utf-8" } : {};
  (
    res as { writeHead(status: number, headers: Record<string, string | number>): unknown }
  ).writeHead(status, { ...SECURITY_HEADERS, ...type, ...headers, "content-length": bytes.length });
  if (headOnly) res.end();
  else res.end(bytes);
}
