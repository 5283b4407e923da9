import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import vm from "node:vm";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONSOLE_CSP, CONSOLE_PATH } from "../../../controlplane/console/console-handler.ts";
import { CONSOLE_HTML } from "../../../controlplane/console/console-page.ts";
import { CONSOLE_SCRIPT } from "../../../controlplane/console/console-script.ts";
import { CONSOLE_STYLE } from "../../../controlplane/console/console-style.ts";
import { ControlServer } from "../../../controlplane/control-server.ts";
import { FileStore } from "../../../controlplane/file-store.ts";
import { ControlService } from "../../../gen/polymur/control/v1/control_pb.ts";
import { createTestPki, type TestPki } from "../../fixtures/tls.ts";

// The web console's files and the control plane's one port answering
// HTTP/1.1 (browsers) as well as h2c and TLS with ALPN h2 and http/1.1. The
// page itself runs in a real browser in test/integration/console.test.ts.

const ADMIN = "admin-token-for-console";
const NODE = "node-token-for-console";

interface Answer {
  status: number;
  httpVersion: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP/1.1 request (Node's http client speaks nothing else). */
function request1(
  url: string,
  o: { method?: string; headers?: Record<string, string>; body?: string; ca?: string } = {},
): Promise<Answer> {
  const mod = url.startsWith("https:") ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      url,
      {
        method: o.method ?? "GET",
        headers: o.headers ?? {},
        agent: false,
        ...(o.ca === undefined ? {} : { ca: o.ca }),
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          body += c;
        });
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            httpVersion: res.httpVersion,
            headers: res.headers,
            body,
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(o.body);
  });
}

function connectJson(base: string, method: string, token: string | null, ca?: string) {
  return request1(`${base}/polymur.control.v1.ControlService/${method}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "connect-protocol-version": "1",
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
    },
    body: "{}",
    ...(ca === undefined ? {} : { ca }),
  });
}

async function startServer(dir: string, name: string, pki?: TestPki) {
  const store = new FileStore(join(dir, name));
  await store.open();
  const server = await ControlServer.start({
    store,
    credentials: { admin: ADMIN, node: NODE },
    host: "127.0.0.1",
    port: 0,
    replica: "r1",
    log: pino({ level: "silent" }),
    closeGraceMs: 100,
    ...(pki === undefined
      ? {}
      : { tls: { cert: readFileSync(pki.certFile), key: readFileSync(pki.keyFile) } }),
  });
  return { store, server };
}

describe("the web console's files", () => {
  it("are one page, one script, one style sheet, with nothing from anywhere else", () => {
    // Every URL in the page is a path of the control plane itself.
    const urls = [...CONSOLE_HTML.matchAll(/(?:src|href)="([^"]*)"/g)].map((m) => m[1]);
    expect(urls.sort()).toEqual(
      ["/console/console.css", "/console/console.js", "/console/favicon.svg"].sort(),
    );
    for (const text of [CONSOLE_HTML, CONSOLE_SCRIPT, CONSOLE_STYLE]) {
      const absolute = [...text.matchAll(/\b(?:https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}/gi)]
        .map((m) => m[0])
        .filter((u) => u !== "http://www.w3.org"); // the SVG namespace, a name, not a fetch
      expect(absolute).toEqual([]);
      expect(text).not.toMatch(/@import|url\(/);
    }
    // No inline script or style for the Content-Security-Policy to allow.
    expect(CONSOLE_HTML).not.toMatch(/<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=/i);
    // The script is JavaScript as served (a raw string: no build step).
    expect(() => new vm.Script(CONSOLE_SCRIPT, { filename: "console.js" })).not.toThrow();
    // It builds its DOM from text: nothing that parses markup (Trusted Types would refuse it).
    expect(CONSOLE_SCRIPT).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
  });
});

describe("a cleartext control plane: HTTP/1.1 and h2c on one port", () => {
  let dir: string;
  let store: FileStore;
  let server: ControlServer;
  let base: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "polymur-console-"));
    ({ store, server } = await startServer(dir, "state"));
    base = `http://127.0.0.1:${server.port}`;
  });
  afterAll(async () => {
    await server?.close();
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves the console over HTTP/1.1, with its Content-Security-Policy", async () => {
    const page = await request1(`${base}${CONSOLE_PATH}`);
    expect(page.httpVersion).toBe("1.1");
    expect(page.status).toBe(200);
    expect(page.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(page.headers["content-security-policy"]).toBe(CONSOLE_CSP);
    expect(CONSOLE_CSP).toMatch(/default-src 'none'/);
    expect(CONSOLE_CSP).not.toMatch(/unsafe/);
    expect(page.headers["x-content-type-options"]).toBe("nosniff");
    expect(page.headers["x-frame-options"]).toBe("DENY");
    expect(page.body).toBe(CONSOLE_HTML);
    const script = await request1(`${base}/console/console.js`);
    expect(script.headers["content-type"]).toBe("text/javascript; charset=utf-8");
    expect(script.body).toBe(CONSOLE_SCRIPT);
    const style = await request1(`${base}/console/console.css?v=1`);
    expect(style.headers["content-type"]).toBe("text/css; charset=utf-8");
    const head = await request1(`${base}/console/console.js`, { method: "HEAD" });
    expect([head.status, head.body, head.headers["content-length"]]).toEqual([
      200,
      "",
      String(Buffer.byteLength(CONSOLE_SCRIPT)),
    ]);
  });

  it("redirects / to the console; refuses other methods and unknown files", async () => {
    for (const path of ["/", "/console"]) {
      const r = await request1(`${base}${path}`);
      expect([path, r.status, r.headers.location]).toEqual([path, 308, CONSOLE_PATH]);
    }
    const post = await request1(`${base}/console/`, { method: "POST", body: "x".repeat(100_000) });
    expect([post.status, post.headers.allow]).toEqual([405, "GET, HEAD"]);
    expect((await request1(`${base}/console/../etc/passwd`)).status).toBe(404);
    expect((await request1(`${base}/console/nope.js`)).status).toBe(404);
    // A POST to / is still the API's: no such RPC.
    expect((await request1(`${base}/`, { method: "POST" })).status).toBe(404);
  });

  it("answers Connect JSON over HTTP/1.1 with the admin credential, and refuses others", async () => {
    let r = await connectJson(base, "ListDestinations", ADMIN);
    expect([r.httpVersion, r.status, JSON.parse(r.body)]).toEqual(["1.1", 200, {}]);
    r = await connectJson(base, "ListNodes", null);
    expect(r.status).toBe(401);
    expect(JSON.parse(r.body)).toMatchObject({
      code: "unauthenticated",
      message: expect.stringMatching(/needs the admin credential/),
    });
    expect(r.headers["polymur-error-code"]).toBe("POLYMUR_ERR_UNAUTHENTICATED");
    r = await connectJson(base, "ListNodes", "wrong-token");
    expect([r.status, JSON.parse(r.body).code]).toEqual([401, "unauthenticated"]);
    r = await connectJson(base, "ListNodes", NODE);
    expect([r.status, JSON.parse(r.body).code]).toEqual([403, "permission_denied"]);
    // Connect's own client over HTTP/1.1 too, mutations included.
    const c = createClient(
      ControlService,
      createConnectTransport({
        baseUrl: base,
        httpVersion: "1.1",
        interceptors: [
          (next) => (req) => {
            req.header.set("authorization", `Bearer ${ADMIN}`);
            return next(req);
          },
        ],
      }),
    );
    const added = await c.addDestination({
      destination: { spec: "10.0.5.30:2003", scope: { target: { case: "all", value: true } } },
    });
    expect((await c.listDestinations({})).version).toBe(added.version);
  });

  it("still answers gRPC over h2c with prior knowledge", async () => {
    const c = createClient(
      ControlService,
      createGrpcTransport({
        baseUrl: base,
        interceptors: [
          (next) => (req) => {
            req.header.set("authorization", `Bearer ${ADMIN}`);
            return next(req);
          },
        ],
      }),
    );
    const res = await c.listDestinations({});
    expect(res.destinations.map((d) => d.spec)).toContain("10.0.5.30:2003");
  });
});

describe("a TLS control plane", () => {
  it("offers ALPN h2 and http/1.1, and serves the console over either", async () => {
    const dir = mkdtempSync(join(tmpdir(), "polymur-console-tls-"));
    const pki = createTestPki();
    const { store, server } = await startServer(dir, "state", pki);
    try {
      const alpn = (protocols: string[]) =>
        new Promise<string | false>((resolve, reject) => {
          const s = tls.connect(
            { host: "127.0.0.1", port: server.port, ca: pki.ca, ALPNProtocols: protocols },
            () => {
              resolve(s.alpnProtocol ?? false);
              s.destroy();
            },
          );
          s.on("error", reject);
        });
      expect(await alpn(["h2", "http/1.1"])).toBe("h2");
      expect(await alpn(["http/1.1"])).toBe("http/1.1");
      const base = `https://127.0.0.1:${server.port}`;
      const page = await request1(`${base}/console/`, { ca: pki.ca });
      expect([page.httpVersion, page.status, page.headers["content-security-policy"]]).toEqual([
        "1.1",
        200,
        CONSOLE_CSP,
      ]);
      const r = await connectJson(base, "ListDestinations", ADMIN, pki.ca);
      expect([r.status, r.body]).toEqual([200, "{}"]);
    } finally {
      await server.close();
      await store.close();
      pki.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
