import { existsSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ADMIN_TOKEN,
  ControlPlaneProcess,
  NODE_TOKEN,
  runCtl,
  waitFor,
} from "../fixtures/control-plane.ts";
import { freePort, LineSink } from "../fixtures/line-sink.ts";
import { PolymurProcess } from "../fixtures/polymur.ts";
import { skipUnlessAvailable } from "../fixtures/requires.ts";

// The web console in a real browser (Debian's chromium, driven by
// playwright-core), against a real control plane, a managed relay with its
// default worker count and data flowing through it, and polymurctl: the page
// loads over the control plane's cleartext port (HTTP/1.1), shows the relay's
// live rates, reflects a `polymurctl dest add` within a few polls, shows lines
// the relay rejects by reason and a destination that is down with its last
// error, and refuses a missing or wrong admin token.

const CHROMIUM = process.env["POLYMUR_CHROMIUM_BIN"] ?? "/usr/bin/chromium";
const withoutChromium = skipUnlessAvailable(`chromium (${CHROMIUM})`, existsSync(CHROMIUM));

/** A line `Sender` writes: the i-th line, at Unix time t. */
type LineMaker = (i: number, t: number) => string;

const goodLine: LineMaker = (i, t) => `console.test.m${i % 20} ${i} ${t}\n`;

/** Sends 20 lines to `port` every 50 ms over one connection until stopped: data flowing. */
class Sender {
  readonly #socket: net.Socket;
  readonly #timer: NodeJS.Timeout;
  sent = 0;

  constructor(port: number, line: LineMaker = goodLine, perTick = 20) {
    this.#socket = net.connect(port, "127.0.0.1");
    this.#socket.on("error", () => {});
    this.#timer = setInterval(() => {
      let batch = "";
      const t = Math.floor(Date.now() / 1000);
      for (let i = 0; i < perTick; i++) batch += line(this.sent++, t);
      this.#socket.write(batch);
    }, 50);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#socket.end();
  }
}

/** The number in a cell's data-value, or undefined while it has none (no rate yet). */
async function cellValue(page: Page, selector: string): Promise<number | undefined> {
  const v = await page
    .locator(selector)
    .first()
    .getAttribute("data-value", { timeout: 1_000 })
    .catch(() => null);
  return v === null || v === "" ? undefined : Number(v);
}

async function attr(page: Page, selector: string, name: string): Promise<string | null> {
  return page
    .locator(selector)
    .first()
    .getAttribute(name, { timeout: 1_000 })
    .catch(() => null);
}

describe.skipIf(withoutChromium)("the web console in a browser", () => {
  let dir: string;
  let cp: ControlPlaneProcess;
  let relay: PolymurProcess;
  let sinkA: LineSink;
  let sinkB: LineSink;
  let sender: Sender;
  let browser: Browser;
  let base: string;
  /** Whatever the page reported that should never happen: script errors, CSP violations. */
  const problems: string[] = [];
  /** Every URL any page asked for. */
  const requested: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "polymur-console-it-"));
    cp = await ControlPlaneProcess.start(["--state-dir", join(dir, "state")]);
    base = cp.url;
    sinkA = await LineSink.start();
    sinkB = await LineSink.start();
    // A managed relay starts listening once it has a first configuration.
    expect((await runCtl(base, ["dest", "add", sinkA.address, "--all"])).code).toBe(0);
    relay = await PolymurProcess.relay(
      ["--control-plane", base, "--group", "web", "--state-dir", join(dir, "node")],
      { POLYMUR_NODE_TOKEN: NODE_TOKEN },
    );
    sender = new Sender(relay.port);
    await sinkA.waitForLines(100);
    browser = await chromium.launch({ executablePath: CHROMIUM });
  });

  afterAll(async () => {
    sender?.stop();
    await browser?.close();
    await relay?.stop();
    await Promise.all([sinkA?.close(), sinkB?.close(), cp?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });

  async function openConsole(): Promise<Page> {
    const page = await browser.newPage();
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("console", (m) => {
      // The refused calls' 401s and 403s are expected; anything else the browser complains of is not.
      if (m.type() === "error" && !/status of 40[13] /.test(m.text())) problems.push(m.text());
    });
    page.on("request", (r) => requested.push(r.url()));
    // "/" redirects to /console/.
    await page.goto(`${base}/`);
    expect(new URL(page.url()).pathname).toBe("/console/");
    return page;
  }

  it("refuses a missing token, then a wrong one, and shows nothing", async () => {
    const page = await openConsole();
    try {
      const refusal = page.locator("#refusal");
      await refusal.waitFor({ state: "visible", timeout: 10_000 });
      expect(await refusal.getAttribute("data-code")).toBe("unauthenticated");
      expect(await refusal.textContent()).toMatch(
        /Refused: no admin token\..*ControlService needs the admin credential/,
      );
      await page.fill("#token", "not-the-admin-token");
      await page.click("#use-token");
      await waitFor("the wrong token's refusal", async () => {
        const text = (await refusal.textContent()) ?? "";
        return /does not accept this token/.test(text) ? text : undefined;
      });
      expect(await refusal.textContent()).toMatch(
        /the credential is not valid for this control plane/,
      );
      expect(await page.locator("#main").isHidden()).toBe(true);
      expect(await page.locator("tr.node").count()).toBe(0);
      // The node credential is not the admin's either.
      await page.fill("#token", NODE_TOKEN);
      await page.click("#use-token");
      await waitFor("the node token's refusal", async () =>
        (await refusal.getAttribute("data-code")) === "permission_denied" ? true : undefined,
      );
      expect(await refusal.textContent()).toMatch(/that is the node credential/);
      // A refused token is not kept.
      expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    } finally {
      await page.close();
    }
  });

  it("shows the managed relay's live rates, and a dest add within a few polls", async () => {
    const page = await openConsole();
    try {
      await page.fill("#token", ADMIN_TOKEN);
      await page.click("#use-token");
      // Kept in this tab's sessionStorage only.
      expect(
        // A string, run in the page: this file is type-checked without the DOM's types.
        await page.evaluate(
          "({ session: Object.values(sessionStorage), local: localStorage.length, cookies: document.cookie })",
        ),
      ).toEqual({ session: [ADMIN_TOKEN], local: 0, cookies: "" });
      const node = "table[data-group=web] tr.node";
      await page.locator(node).waitFor({ timeout: 20_000 });
      expect(await page.locator("#refusal").isHidden()).toBe(true);
      expect(await page.locator(`${node} td[data-field=state]`).textContent()).toBe("connected");

      // Rates come from successive reports (every 5 s): the first after two changes.
      const inRate = `${node} td[data-field=in-rate]`;
      const first = await waitFor(
        "a non-zero rate in",
        async () => {
          const v = await cellValue(page, inRate);
          return v !== undefined && v > 0 ? v : undefined;
        },
        40_000,
      );
      const samples = Number(await attr(page, node, "data-samples"));
      expect(first).toBeGreaterThan(0);
      // Updating: a later report makes a new sample, and the rate is still there.
      const later = await waitFor(
        "a later sample with a non-zero rate in",
        async () => {
          const n = Number(await attr(page, node, "data-samples"));
          const v = await cellValue(page, inRate);
          return n > samples && v !== undefined && v > 0 ? { n, v } : undefined;
        },
        30_000,
      );
      expect(later.n).toBeGreaterThan(samples);
      expect(await cellValue(page, `${node} td[data-field=out-rate]`)).toBeGreaterThan(0);
      // Per destination: its rate out, and a graph drawn with points.
      const destA = `tr.dest[data-dest="${sinkA.address}"]`;
      await waitFor("destination A's rate out", async () => {
        const v = await cellValue(page, `${destA} td[data-field=out-rate]`);
        return v !== undefined && v > 0 ? v : undefined;
      });
      expect(await page.locator(`${node} svg.spark polyline.in`).count()).toBe(1);

      // polymurctl dest add: the page shows the new destination within a few polls.
      const added = await runCtl(base, ["dest", "add", sinkB.address, "--group", "web", "--json"]);
      expect(added.code).toBe(0);
      const { version } = JSON.parse(added.stdout) as { version: number };
      await page
        .locator(`[data-scope="group:web"] li[data-spec="${sinkB.address}"]`)
        .waitFor({ timeout: 10_000 });
      expect(await attr(page, "#summary", "data-version")).toBe(String(version));
      // The relay applies it, reports it, and the page lists it under the node.
      await page.locator(`tr.dest[data-dest="${sinkB.address}"]`).waitFor({ timeout: 20_000 });
      await waitFor("the relay at the new version", async () =>
        (await page.locator(`${node} td[data-field=applied]`).textContent()) === String(version)
          ? true
          : undefined,
      );

      // The history, where the control plane keeps one.
      const history = await fetch(`${base}/polymur.control.v1.ControlService/ListHistory`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          authorization: `Bearer ${ADMIN_TOKEN}`,
        },
        body: "{}",
      });
      if (history.ok) {
        await page
          .locator(`#history-body tr[data-version="${version}"]`)
          .waitFor({ timeout: 10_000 });
        expect(
          await page.locator(`#history-body tr[data-version="${version}"]`).textContent(),
        ).toContain(sinkB.address);
      } else {
        expect(await page.locator("#history-body").textContent()).toMatch(/no history/);
      }

      // "Forget token": back to the refusal, nothing shown.
      await page.click("#forget-token");
      await page.locator("#refusal").waitFor({ state: "visible", timeout: 10_000 });
      expect(await page.locator("#main").isHidden()).toBe(true);
    } finally {
      await page.close();
    }
  });

  it("shows rejects by reason with their rate, and a destination that is down with its last error", async () => {
    // A destination nothing listens on: the relay's connects are refused.
    const deadPort = await freePort();
    const dead = `127.0.0.1:${deadPort}`;
    expect((await runCtl(base, ["dest", "add", dead, "--group", "web"])).code).toBe(0);
    // Lines of two fields, which the relay rejects (field_count), one every 50 ms.
    const bad = new Sender(relay.port, (i) => `bad line${i}\n`, 1);
    const page = await openConsole();
    try {
      await page.fill("#token", ADMIN_TOKEN);
      await page.click("#use-token");
      const reasons = "table[data-group=web] tr.reasons";
      const fieldCount = `${reasons} span.reasons[data-kind=rejected] span.reason[data-reason=field_count]`;
      const seen = await waitFor(
        "field_count rejects with a non-zero rate",
        async () => {
          const count = Number((await attr(page, fieldCount, "data-count")) ?? 0);
          const rate = (await attr(page, fieldCount, "data-rate")) ?? "";
          return count > 0 && rate !== "" && Number(rate) > 0
            ? { count, rate: Number(rate) }
            : undefined;
        },
        60_000,
      );
      expect(seen.count).toBeGreaterThan(0);
      expect(await page.locator(fieldCount).textContent()).toMatch(
        /^field_count [\d,]+ \([\d.,]+\/s\)$/,
      );
      // Only reasons with a count are shown: the relay rejected nothing else.
      expect(await page.locator(`${reasons} span.reason[data-reason=bad_value]`).count()).toBe(0);
      expect(
        await page.locator(`${reasons} span.reasons[data-kind=rejected]`).textContent(),
      ).toMatch(/^rejected: field_count [^,]*$/);

      // The destination that is down: its last error, as the relay's /stats has it.
      const lastError = page.locator(`tr.dest-detail[data-dest="${dead}"] [data-field=last-error]`);
      await lastError.waitFor({ timeout: 20_000 });
      expect(await lastError.textContent()).toBe(`last error: connect ECONNREFUSED ${dead}`);
      expect(
        await page.locator(`tr.dest[data-dest="${dead}"] td[data-field=state]`).textContent(),
      ).toMatch(/^(connecting|backoff)$/);
      // The destinations that are up have no error to show.
      expect(await page.locator(`tr.dest-detail[data-dest="${sinkA.address}"]`).count()).toBe(0);
    } finally {
      bad.stop();
      await page.close();
    }
  });

  it("asked nothing of any other origin, and broke no rule of its policy", () => {
    expect(requested.length).toBeGreaterThan(0);
    expect(requested.filter((u) => new URL(u).origin !== base)).toEqual([]);
    expect(problems).toEqual([]);
  });
});
