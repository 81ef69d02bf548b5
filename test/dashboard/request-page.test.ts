import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { FakeChannel } from "../fakes/fake-channel.js";
import { ENGINE } from "../helpers/db.js";
import { seedText } from "../helpers/policy.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

/** Another project with its own approver: its requests are none of jordan's business. */
const TREASURY = `project: treasury
agents: [payer]
approvers:
  - id: casey
`;

/**
 * A chat card's "Full proposal" link is opened in a browser: it must lead to the dashboard's page
 * for the request, through sign-in and back, not to the API (which answers 401 to a browser).
 */
describe(`a request's dashboard page, from a chat card's link (${ENGINE})`, () => {
  let s: TestServer;
  const slack = new FakeChannel("slack");
  let id: string;
  let jordan: string;

  beforeAll(async () => {
    s = await startTestServer({
      policies: { "project-billing.yaml": seedText(), "treasury.yaml": TREASURY },
      channels: [slack],
    });
    const agent = await s.agentToken("billing-reconciler-1", "project-billing");
    const denied = await s.authorize(agent, {
      action: "stripe:charges:read",
      resource: "stripe.com/v1/charges",
    });
    const filed = await s.http("POST", "/v1/access-requests", agent, {
      reason: "reconcile payouts",
      denial_event_id: denied.body.event_id,
    });
    expect(filed.status).toBe(201);
    id = filed.body.access_request.id;
    jordan = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
  });
  afterAll(() => s?.cleanup());

  const get = (path: string, cookie?: string) =>
    fetch(`${s.url}${path}`, { redirect: "manual", headers: cookie ? { cookie } : {} });
  const form = (path: string, fields: Record<string, string>) =>
    fetch(`${s.url}${path}`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(fields).toString(),
    });

  test("the card links to /dashboard/requests/<id>; signing in there comes back to it", async () => {
    await slack.next(() => slack.cardOf(id) !== undefined, "the Slack card");
    const link = new URL(slack.cardOf(id)!.url);
    expect(link.href).toBe(`${s.url}/dashboard/requests/${id}`);

    const anonymous = await get(link.pathname);
    expect(anonymous.status).toBe(303);
    const signIn = anonymous.headers.get("location")!;
    expect(signIn).toBe(`/dashboard/sign-in?next=${encodeURIComponent(`/dashboard/requests/${id}`)}`);
    const page = await (await get(signIn)).text();
    expect(page).toContain(`<input type="hidden" name="next" value="/dashboard/requests/${id}">`);

    const signedIn = await form("/dashboard/sign-in", { token: jordan, next: `/dashboard/requests/${id}` });
    expect(signedIn.status).toBe(303);
    expect(signedIn.headers.get("location")).toBe(`/dashboard/requests/${id}`);
    const cookie = signedIn.headers.get("set-cookie")!.split(";")[0]!;
    const shown = await get(`/dashboard/requests/${id}`, cookie);
    expect(shown.status).toBe(200);
    const html = await shown.text();
    expect(html).toContain(`id="req-${id}"`);
    expect(html).toContain("reconcile payouts");
    expect(html).toContain('<span class="d-add">+    actions: [&quot;charges:read&quot;]</span>');
    expect(html).toContain(`action="/dashboard/requests/${id}/approve"`);
  });

  test("a one-time link keeps where it was going too", async () => {
    const link = JSON.parse((await s.cli(["dashboard", "link", "jordan", "--json"])).stdout).url as string;
    const code = new URL(link).searchParams.get("code")!;
    const next = `/dashboard/requests/${id}`;
    const page = await (await get(`/dashboard/sign-in?code=${code}&next=${encodeURIComponent(next)}`)).text();
    expect(page).toContain(`name="next" value="${next}"`);
    const signedIn = await form("/dashboard/sign-in/link", { code, next });
    expect(signedIn.headers.get("location")).toBe(next);
  });

  test("after sign-in only a dashboard page of this server is a destination", async () => {
    for (const next of [
      "https://evil.example/",
      "//evil.example/dashboard",
      "/dashboardx",
      "/v1/grants",
      "/dashboard/../v1/grants",
      "/dashboard/..",
      "/dashboard?x=\r\nSet-Cookie: a=b",
      "/dashboard?x=\u0001",
      "/dashboard?x=Ā",
    ]) {
      const page = await (await get(`/dashboard/sign-in?next=${encodeURIComponent(next)}`)).text();
      expect(page, next).not.toContain('name="next"');
      const r = await form("/dashboard/sign-in", { token: jordan, next });
      expect(r.status, next).toBe(400);
    }
    const home = await form("/dashboard/sign-in", { token: jordan });
    expect(home.headers.get("location")).toBe("/dashboard");
    // A page URL sign-in would not take back (too long for `next`) just asks to sign in.
    const long = await get(`/dashboard/history?agent=${"a".repeat(600)}`);
    expect(long.headers.get("location")).toBe("/dashboard/sign-in");
    const query = await get("/dashboard/history?action=stripe:*:read");
    expect(query.headers.get("location")).toBe(
      `/dashboard/sign-in?next=${encodeURIComponent("/dashboard/history?action=stripe:*:read")}`,
    );
  });

  test("another project's approver, or an unknown request: not found; an auditor sees it without buttons", async () => {
    const casey = JSON.parse((await s.cli(["approvers", "token", "casey", "--json"])).stdout).token;
    const caseyCookie = await s.dashboardCookie(casey);
    expect((await get(`/dashboard/requests/${id}`, caseyCookie)).status).toBe(404);
    const jordanCookie = await s.dashboardCookie(jordan);
    expect((await get("/dashboard/requests/req_0000000000000000", jordanCookie)).status).toBe(404);
    expect((await get("/dashboard/requests/nope", jordanCookie)).status).toBe(400);
    const sam = JSON.parse((await s.cli(["auditors", "token", "sam", "--json"])).stdout).token;
    const html = await (await get(`/dashboard/requests/${id}`, await s.dashboardCookie(sam))).text();
    expect(html).toContain(`id="req-${id}"`);
    expect(html).not.toContain(`action="/dashboard/requests/${id}/approve"`);
  });
});
