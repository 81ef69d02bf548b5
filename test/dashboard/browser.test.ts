import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ENGINE } from "../helpers/db.js";
import { seedText } from "../helpers/policy.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

/** Debian's chromium (the CI installs it with apt-get); another build can be named. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
/**
 * Where screenshots go: a temporary directory, so that a test run leaves the checkout as it was;
 * BUTLER_SCREENSHOTS=1 writes the README's (docs/screenshots) instead.
 */
const SHOTS = process.env.BUTLER_SCREENSHOTS
  ? fileURLToPath(new URL("../../docs/screenshots/", import.meta.url))
  : `${mkdtempSync(join(tmpdir(), "butler-shots-"))}/`;

/** Agent-written text that would run or render if any renderer treated it as markup. */
const HOSTILE = `Reconcile payouts <img src=x onerror="document.title='pwned'"><script>document.title='pwned'</script> & <b>now</b>`;

/** The dashboard in real headless Chromium, against the real server. */
describe(`the dashboard in Chromium (${ENGINE})`, () => {
  let s: TestServer;
  let browser: Browser;
  let agent: string;
  let jordan: string;
  let auditor: string;
  const violations: string[] = [];

  beforeAll(async () => {
    s = await startTestServer({ policies: { "project-billing.yaml": seedText() } });
    agent = await s.agentToken("billing-reconciler-1", "project-billing");
    jordan = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
    auditor = JSON.parse((await s.cli(["auditors", "token", "sam", "--json"])).stdout).token;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    mkdirSync(SHOTS, { recursive: true });
  });
  afterAll(async () => {
    await browser?.close();
    await s?.cleanup();
    if (!process.env.BUTLER_SCREENSHOTS) rmSync(SHOTS, { recursive: true, force: true });
  });

  /** A browser context signed in with a token through the sign-in form. */
  async function signedIn(token: string, viewport = { width: 1280, height: 900 }) {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    // Any Content-Security-Policy violation (an inline script or style the page would need) is a bug.
    page.on("console", (m) => {
      if (/Content Security Policy/i.test(m.text())) violations.push(m.text());
    });
    await page.goto(`${s.url}/dashboard`);
    expect(new URL(page.url()).pathname).toBe("/dashboard/sign-in");
    await page.fill("#token", token);
    await Promise.all([page.waitForURL(`${s.url}/dashboard`), page.click('button[type="submit"]')]);
    return { context, page };
  }

  /** The agent is denied a call and asks for it, as the seed scenario does. */
  async function deniedAndAsked(action: string, resource: string, reason = "reconcile payouts") {
    const denied = await s.authorize(agent, { action, resource });
    expect(denied.body.decision).toBe("DENY");
    const r = await s.http("POST", "/v1/access-requests", agent, {
      reason,
      denial_event_id: denied.body.event_id,
    });
    expect(r.status).toBe(201);
    return (r.body as { access_request: { id: string } }).access_request.id;
  }

  const text = (page: Page, selector: string) => page.locator(selector).first().textContent();

  test("sign in, see the pending request with its diff, approve with one tap; the agent's next call is allowed", async () => {
    const id = await deniedAndAsked("stripe:charges:read", "stripe.com/v1/charges", HOSTILE);
    const { context, page } = await signedIn(jordan);
    const card = `#req-${id}`;
    await page.locator(card).waitFor();
    expect(await text(page, `${card} h2`)).toBe("billing-reconciler-1 asks for stripe:charges:read");
    expect(await text(page, `${card} .approvals`)).toBe("0 of 1 approval");
    // The agent's reason is text, labelled as the agent's: nothing in it became markup or ran.
    expect(await text(page, `${card} .reason h3`)).toContain("written by the agent");
    expect(await text(page, `${card} .agent-text`)).toBe(HOSTILE);
    expect(await page.locator(`${card} .reason img, ${card} .reason script, ${card} .reason b`).count()).toBe(
      0,
    );
    expect(await page.title()).not.toBe("pwned");
    // The full policy diff, with the added grant's lines marked.
    const added = await page.locator(`${card} .diff .d-add`).allTextContents();
    expect(added.join("\n")).toContain(`- id: ${id}`);
    expect(added.join("\n")).toContain('actions: ["charges:read"]');
    await page.screenshot({ path: `${SHOTS}pending-desktop.png`, fullPage: true });

    const phone = await browser.newContext({
      viewport: { width: 390, height: 844 },
      isMobile: true,
      hasTouch: true,
    });
    await phone.addCookies(await context.cookies());
    const phonePage = await phone.newPage();
    await phonePage.goto(`${s.url}/dashboard`);
    await phonePage.locator(card).waitFor();
    // On a phone the buttons fill the width: one tap target each.
    const approve = await phonePage.locator(`${card} button.primary`).boundingBox();
    expect(approve!.width).toBeGreaterThan(300);
    await phonePage.screenshot({ path: `${SHOTS}pending-phone.png`, fullPage: true });
    await phone.close();

    await page.click(`${card} button.primary`);
    await page.locator(`${card} .outcome`).waitFor();
    expect(await text(page, `${card} .outcome`)).toMatch(
      /^Approved by jordan via dashboard; the grant expires /,
    );
    // Decided: no more Approve or Deny; only making the grant a permanent rule is offered.
    expect(await page.locator(`${card} button`).allTextContents()).toEqual(["Remember as a permanent rule"]);
    const allowed = await s.authorize(agent, {
      action: "stripe:charges:read",
      resource: "stripe.com/v1/charges",
    });
    expect(allowed.body).toMatchObject({ decision: "ALLOW", grant_id: id, approved_by: "jordan" });
    await context.close();
  });

  test("an approval made through the API appears in an open page within a second, without a reload", async () => {
    const id = await deniedAndAsked("stripe:invoices:read", "stripe.com/v1/invoices");
    const { context, page } = await signedIn(jordan);
    await page.locator(`#req-${id} button.primary`).waitFor();
    await page.evaluate(() => {
      (globalThis as unknown as { notReloaded: boolean }).notReloaded = true;
    });
    const r = await s.http("POST", `/v1/access-requests/${id}/approve`, jordan, {});
    expect(r.status).toBe(200);
    await page.locator(`#req-${id} .outcome`).waitFor({ timeout: 1000 });
    expect(await text(page, `#req-${id} .outcome`)).toMatch(/^Approved by jordan via api/);
    expect(await page.evaluate(() => (globalThis as unknown as { notReloaded?: boolean }).notReloaded)).toBe(
      true,
    );
    await context.close();
  });

  test("the live timeline shows the seed scenario's steps in order as they happen", async () => {
    const { context, page } = await signedIn(jordan);
    await page.goto(`${s.url}/dashboard/timeline?agent=billing-reconciler-1`);
    const before = await page.locator("#timeline li").count();
    // The seed scenario: denied, asks, a person approves, the grant goes live, the agent retries.
    const id = await deniedAndAsked("stripe:balance:read", "stripe.com/v1/balance");
    await s.http("POST", `/v1/access-requests/${id}/approve`, jordan, {});
    await s.authorize(agent, { action: "stripe:balance:read", resource: "stripe.com/v1/balance" });
    const steps = [
      "gateway.denied",
      "access_request.filed",
      "policy.proposed",
      "access_request.approved",
      "grant.applied",
      "gateway.allowed",
    ];
    // Live: the last step arrives without a reload.
    const read = () =>
      page.locator("#timeline li").evaluateAll((lis) =>
        lis.map((li) => ({
          seq: Number(li.getAttribute("data-seq")),
          type: li.querySelector(".etype")?.textContent,
        })),
      );
    let items = await read();
    for (const end = Date.now() + 5000; Date.now() < end; ) {
      if (items.slice(before).some((i) => i.type === "gateway.allowed")) break;
      await new Promise((r) => setTimeout(r, 50));
      items = await read();
    }
    const fresh = items.slice(before).map((i) => i.type);
    expect(fresh.filter((t) => steps.includes(t!))).toEqual(steps);
    // In order, and never the same event twice.
    const seqs = items.map((i) => i.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
    await page.screenshot({ path: `${SHOTS}timeline.png`, fullPage: true });
    await context.close();
  });

  test("a reconnect resumes after the last event id: no gap, no duplicate", async () => {
    const { context } = await signedIn(jordan);
    const cookie = (await context.cookies()).map((c) => `${c.name}=${c.value}`).join("; ");
    await context.close();
    const first = await s.authorize(agent, {
      action: "stripe:payouts:read",
      resource: "stripe.com/v1/payouts",
    });
    const second = await s.authorize(agent, {
      action: "stripe:refunds:read",
      resource: "stripe.com/v1/refunds",
    });
    const lines = (await s.cli(["audit", "export", "--agent", "billing-reconciler-1"])).stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { seq: number; event_id: string });
    const a = lines.find((l) => l.event_id === first.body.event_id)!;
    const b = lines.find((l) => l.event_id === second.body.event_id)!;
    const ctl = new AbortController();
    const res = await fetch(`${s.url}/dashboard/events?agent=billing-reconciler-1`, {
      headers: { cookie, "last-event-id": String(a.seq) },
      signal: ctl.signal,
    });
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const reader = res.body!.getReader();
    let got = "";
    while (!got.includes(`id: ${b.seq}\n`)) got += new TextDecoder().decode((await reader.read()).value);
    ctl.abort();
    const ids = [...got.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
    expect(ids[0]).toBe(lines[lines.indexOf(a) + 1]!.seq);
    expect(ids).toContain(b.seq);
    expect(ids).not.toContain(a.seq);
  });

  test("revoke a grant: the agent is denied again at once", { timeout: 60_000 }, async () => {
    const id = await deniedAndAsked("stripe:disputes:read", "stripe.com/v1/disputes");
    await s.http("POST", `/v1/access-requests/${id}/approve`, jordan, {});
    const { context, page } = await signedIn(jordan);
    await page.goto(`${s.url}/dashboard/grants`);
    const row = `#grant-${id}`;
    expect(await text(page, `${row} td:nth-child(6)`)).toMatch(/^23 h 59 min left \(until /);
    await page.click(`${row} button.danger`);
    await page.waitForSelector(`${row}[data-state="revoked"]`);
    const denied = await s.authorize(agent, {
      action: "stripe:disputes:read",
      resource: "stripe.com/v1/disputes",
    });
    expect(denied.body.decision).toBe("DENY");
    await page.goto(`${s.url}/dashboard/grants?state=revoked&agent=billing-reconciler-1`);
    expect(await text(page, `${row} td:nth-child(6)`)).toMatch(/^revoked by approver:jordan at /);
    await context.close();
  });

  test("an auditor reads everything but cannot approve", async () => {
    const id = await deniedAndAsked("stripe:customers:read", "stripe.com/v1/customers");
    const { context, page } = await signedIn(auditor);
    await page.locator(`#req-${id}`).waitFor();
    expect(await page.locator(`#req-${id} button`).count()).toBe(0);
    expect(await text(page, `#req-${id} .note`)).toBe("Auditors can read, not decide.");
    const csrf = await page.locator('meta[name="csrf-token"]').getAttribute("content");
    const r = await page.request.post(`${s.url}/dashboard/requests/${id}/approve`, {
      form: { _csrf: csrf! },
      headers: { accept: "application/json" },
    });
    expect(r.status()).toBe(403);
    expect((await r.json()).error.message).toBe("auditors can read, not decide");
    expect((await s.http("GET", `/v1/access-requests/${id}`, jordan)).body).toMatchObject({
      status: "pending",
    });
    await page.goto(`${s.url}/dashboard/audit`);
    expect(await text(page, ".chain")).toMatch(/^Chain verified: verified up to sequence \d+/);
    await context.close();
  });

  test("history is searchable; each entry links to its events; policies show YAML, revisions and diffs; a session replays as a story", async () => {
    const denied = await deniedAndAsked("stripe:coupons:read", "stripe.com/v1/coupons");
    await s.http("POST", `/v1/access-requests/${denied}/deny`, jordan, { reason: "not needed <b>now</b>" });
    const { context, page } = await signedIn(jordan);
    const ids = async (query: string) => {
      await page.goto(`${s.url}/dashboard/history?${query}`);
      return page
        .locator("table.history tbody tr[data-id]")
        .evaluateAll((rows) => rows.map((r) => r.getAttribute("data-id")));
    };
    expect(await ids("approver=jordan&status=denied")).toEqual([denied]);
    expect(await text(page, `tr[data-id="${denied}"] td:nth-child(5)`)).toMatch(
      /^denied by jordan via api at .+not needed <b>now<\/b>$/,
    );
    const approvedReads = await ids("action=stripe:*:read&status=approved&agent=billing-reconciler-1");
    expect(approvedReads.length).toBeGreaterThanOrEqual(4);
    expect(approvedReads).not.toContain(denied);
    const today = new Date().toISOString().slice(0, 10);
    expect((await ids(`since=${today}&until=${today}`)).length).toBe((await ids("")).length);
    expect(await ids("until=2000-01-01")).toEqual([]);

    // Each entry links to its audit events.
    await page.goto(`${s.url}/dashboard/history?status=denied`);
    await Promise.all([
      page.waitForURL(/\/dashboard\/audit\?grant=/),
      page.click(`tr[data-id="${denied}"] a`),
    ]);
    // Newest first; telling the agent happens after commit, so it may or may not be there yet.
    const types = (await page.locator(".timeline .etype").allTextContents()).filter(
      (t) => t !== "agent.notified",
    );
    expect(types).toEqual(["access_request.denied", "policy.proposed", "access_request.filed"]);

    // The effective policy, its revisions, and the diff between two of them.
    await page.goto(`${s.url}/dashboard/policies`);
    const section = "#policy-project-billing";
    expect(await text(page, `${section} pre.yaml`)).toContain("project: project-billing");
    const revisions = await page.locator(`${section} .revisions li`).count();
    expect(revisions).toBeGreaterThan(2);
    await page.selectOption(`${section} select[name="from"]`, "1");
    await Promise.all([page.waitForURL(/from=1/), page.click(`${section} .filters button`)]);
    const added = (await page.locator(`${section} .diff .d-add`).allTextContents()).join("\n");
    expect(added).toContain('actions: ["charges:read"]');

    // One agent's session as a story, agent-written text as text.
    await page.goto(`${s.url}/dashboard/replay?agent=billing-reconciler-1`);
    const story = await page.locator(".story li .agent-text").allTextContents();
    expect(story[0]).toMatch(/^token tok_\w+ created for billing-reconciler-1 in project-billing/);
    expect(story).toContain(
      "DENIED stripe:charges:read on stripe.com/v1/charges: no policy grants stripe:* for project-billing",
    );
    expect(story.some((l) => l.includes(HOSTILE))).toBe(true);
    expect(await page.locator(".story img, .story script").count()).toBe(0);
    await context.close();
  });

  test("a change without the CSRF token, from another site, or without a session is refused", async () => {
    const id = await deniedAndAsked("stripe:products:read", "stripe.com/v1/products");
    const { context, page } = await signedIn(jordan);
    const url = `${s.url}/dashboard/requests/${id}/approve`;
    const noCsrf = await page.request.post(url, { form: {}, headers: { accept: "application/json" } });
    expect(noCsrf.status()).toBe(403);
    expect((await noCsrf.json()).error.message).toMatch(/CSRF token is missing or wrong/);
    const csrf = await page.locator('meta[name="csrf-token"]').getAttribute("content");
    const crossSite = await page.request.post(url, {
      form: { _csrf: csrf! },
      headers: { accept: "application/json", "sec-fetch-site": "cross-site" },
    });
    expect(crossSite.status()).toBe(403);
    const noSession = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
      body: new URLSearchParams({ _csrf: csrf! }).toString(),
    });
    expect(noSession.status).toBe(401);
    expect((await s.http("GET", `/v1/access-requests/${id}`, jordan)).body).toMatchObject({
      status: "pending",
    });
    // The cookie is HttpOnly and SameSite=Strict; signing out ends the session on the server.
    const [cookie] = await context.cookies();
    expect(cookie).toMatchObject({ name: "butler_session", httpOnly: true, sameSite: "Strict" });
    await Promise.all([page.waitForURL(`${s.url}/dashboard/sign-in`), page.click(".who button")]);
    const after = await fetch(`${s.url}/dashboard/fragments/requests`, {
      headers: { cookie: `${cookie!.name}=${cookie!.value}` },
    });
    expect(after.status).toBe(401);
    await context.close();
    expect(violations).toEqual([]);
  });
});
