import { createHmac } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startStandInStripe } from "../../examples/stand-in-stripe.js";
import { ENGINE } from "../helpers/db.js";
import { seedText } from "../helpers/policy.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const PROVIDERS_DIR = fileURLToPath(new URL("../../providers", import.meta.url));
const STRIPE_KEY = "sk_test_butler_only_4242";
const MASTER_KEY = "11".repeat(32);

const SUPPORT = `project: project-support
providers: [stripe, revolut, wise]
agents:
  - name: support-bot-1
    roles: [support-tier-1]
  - name: support-bot-2
    roles: [support-tier-2]
  - name: support-bot-3
    roles: [support-tier-1]
grants:
  - id: refunds-tier-1
    description: Refunds up to 5000 cents, for tier-1 support only.
    service: stripe
    actions: [refunds:create]
    roles: [support-tier-1]
    constraints:
      amount: { max: 5000 }
approvers:
  - id: jordan
budgets:
  - id: tier1-daily
    agents: [support-bot-1]
    period: day
    currency: EUR
    limit: 10000
  - id: bot3-session
    agents: [support-bot-3]
    period: session
    currency: EUR
    limit: 1000
`;

/** Providers in the call path, against a local stand-in Stripe that holds Stripe's contract. */
describe(`providers in the call path (${ENGINE})`, () => {
  let stripe: Awaited<ReturnType<typeof startStandInStripe>>;
  let s: TestServer;
  let billing: string;
  let tier1: string;
  let tier2: string;
  let bot3: string;
  let jordan: string;

  beforeAll(async () => {
    stripe = await startStandInStripe(STRIPE_KEY);
    // A port nothing listens on: Revolut "is down".
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const downPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    s = await startTestServer({
      policies: { "project-billing.yaml": seedText(), "project-support.yaml": SUPPORT },
      env: {
        PROVIDERS_DIR,
        BUTLER_PROVIDER_URLS: `stripe=${stripe.url},revolut=http://127.0.0.1:${downPort},wise=${stripe.url}`,
        BUTLER_MASTER_KEY: MASTER_KEY,
        STRIPE_WEBHOOK_SECRET: "whsec_test_secret",
        REVOLUT_WEBHOOK_SECRET: "revolut_test_secret",
        STRIPE_API_KEY: STRIPE_KEY,
        REVOLUT_ACCESS_TOKEN: "revolut-token",
      },
    });
    billing = await s.agentToken("billing-reconciler-1", "project-billing");
    tier1 = await s.agentToken("support-bot-1", "project-support");
    tier2 = await s.agentToken("support-bot-2", "project-support");
    bot3 = await s.agentToken("support-bot-3", "project-support");
    jordan = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
  });
  afterAll(async () => {
    await s?.cleanup();
    await stripe?.close();
  });

  /** An unmodified HTTP client talking to the proxy as if it were Stripe (Stripe-style form body). */
  async function proxy(
    token: string,
    method: string,
    path: string,
    form?: Record<string, string>,
    headers: Record<string, string> = {},
  ) {
    const res = await fetch(`${s.url}/v1/proxy/stripe${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(form ? { "content-type": "application/x-www-form-urlencoded" } : {}),
        ...headers,
      },
      body: form ? new URLSearchParams(form).toString() : undefined,
    });
    const text = await res.text();
    return {
      status: res.status,
      text,
      body: JSON.parse(text),
      eventId: res.headers.get("x-butler-event-id"),
    };
  }

  async function operation(
    token: string,
    op: string,
    params: Record<string, unknown>,
    headers: Record<string, string> = {},
  ) {
    const res = await fetch(`${s.url}/v1/providers/stripe/operations/${op}`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers },
      body: JSON.stringify({ params }),
    });
    const text = await res.text();
    return { status: res.status, text, body: JSON.parse(text) };
  }

  test("the seed loop through the proxy: denied, asks, approved, the same request goes through", async () => {
    const before = stripe.requests.length;
    const denied = await proxy(billing, "GET", "/v1/charges?limit=3");
    expect(denied.status).toBe(403);
    expect(denied.body).toMatchObject({
      agent: "billing-reconciler-1",
      project: "project-billing",
      action: "stripe:charges:read",
      resource: "stripe.com/v1/charges",
      decision: "DENY",
      reason: "no policy grants stripe:* for project-billing",
      http_status: 403,
      request_access: { body: { denial_event_id: denied.body.event_id } },
    });
    expect(stripe.requests.length).toBe(before);
    const filed = await s.http("POST", "/v1/access-requests", billing, {
      ttl: "PT24H",
      reason: "need read-only Stripe charges for ledger reconciliation",
      denial_event_id: denied.body.event_id,
    });
    expect(filed.status).toBe(201);
    const approved = await s.http(
      "POST",
      `/v1/access-requests/${filed.body.access_request.id}/approve`,
      jordan,
      {},
    );
    expect(approved.status).toBe(200);
    const ok = await proxy(billing, "GET", "/v1/charges?limit=3");
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ object: "list", data: [{ id: "ch_demo_0001" }, {}, {}] });
    // Stripe saw Butler's key, never the agent's token; the agent never saw the key.
    const seen = stripe.requests.at(-1)!;
    expect(seen.headers.authorization).toBe(`Bearer ${STRIPE_KEY}`);
    expect(JSON.stringify(stripe.requests)).not.toContain(billing);
    expect(ok.text).not.toContain(STRIPE_KEY);
    const audit = await s.cli(["audit", "export", "--agent", "billing-reconciler-1"]);
    expect(audit.stdout).not.toContain(STRIPE_KEY);
    const called = audit.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .filter((e) => e.type === "provider.called");
    expect(called.at(-1)).toMatchObject({
      provider: "stripe",
      operation: "list_charges",
      upstream_status: 200,
      decision_event_id: ok.eventId,
      summary: { object: "list", count: 3 },
    });
  });

  test("list_customers is allowed by the read default where the project enables Stripe", async () => {
    const r = await operation(tier2, "list_customers", { limit: 2 });
    expect(r.status).toBe(200);
    expect(r.body.data).toHaveLength(2);
    // The seed's project-billing names no provider: the same call is denied there.
    const billingTry = await operation(billing, "list_customers", { limit: 2 });
    expect(billingTry.status).toBe(403);
    // Denied by the policy itself (no grant), not by any operation group: Stripe's defaults do not apply.
    expect(billingTry.body).toMatchObject({ decision: "DENY", project: "project-billing" });
    expect(billingTry.body.reason).toMatch(/^no policy grants stripe:\S+ for project-billing$/);
  });

  test("create_refund: denied by default, allowed for tier-1 up to 5000 cents, denied at 7000 naming the constraint", async () => {
    const t2 = await operation(tier2, "create_refund", { charge: "ch_demo_0001", amount: 1000 });
    expect(t2.status).toBe(403);
    expect(t2.body.reason).toContain("roles support-tier-1");
    const small = await operation(tier1, "create_refund", {
      charge: "ch_demo_0001",
      amount: 4500,
      metadata: { ticket: "T-42" },
    });
    expect(small.status).toBe(200);
    expect(small.body).toMatchObject({ object: "refund", amount: 4500, metadata: { ticket: "T-42" } });
    const sent = stripe.requests.at(-1)!;
    expect(sent.headers["content-type"]).toBe("application/x-www-form-urlencoded");
    expect(new URLSearchParams(sent.body).get("metadata[ticket]")).toBe("T-42");
    expect(sent.headers["idempotency-key"]).toMatch(/^butler-evt_[a-z0-9]{16}$/);
    const big = await operation(tier1, "create_refund", { charge: "ch_demo_0001", amount: 7000 });
    expect(big.status).toBe(403);
    expect(big.body.reason).toBe("amount 7000 exceeds max 5000 in grant refunds-tier-1");
    // A payment is in a group that is denied by default, and no grant allows it.
    const pay = await operation(tier1, "create_payment_intent", { amount: 100, currency: "eur" });
    expect(pay.status).toBe(403);
    expect(pay.body.reason).toBe(
      "the stripe operation group payments.create is denied by default; no grant allows stripe:payment_intents:create for project-support",
    );
  });

  test("an agent's Idempotency-Key is passed on, namespaced: its retry is replayed by Stripe, not executed twice", async () => {
    const created = stripe.created.refunds;
    const call = () =>
      operation(
        tier1,
        "create_refund",
        { charge: "ch_demo_0002", amount: 300 },
        { "idempotency-key": "refund-T-77" },
      );
    const first = await call();
    const second = await call();
    expect(first.status).toBe(200);
    expect(second.body).toEqual(first.body);
    expect(stripe.created.refunds).toBe(created + 1);
    const keys = stripe.requests.slice(-2).map((r) => r.headers["idempotency-key"]);
    expect(keys[0]).toBe(keys[1]);
    expect(keys[0]).toMatch(/^butler-[0-9a-f]{16}-refund-T-77$/);
  });

  test("budgets: a refund that would exceed the agent's daily budget is denied with what is left; retries count once", async () => {
    // Spent so far today by support-bot-1: 4500 + 300 (the retried call counted once).
    const fits = await operation(tier1, "create_refund", { charge: "ch_demo_0003", amount: 5000 });
    expect(fits.status).toBe(200);
    const before = stripe.requests.length;
    const over = await operation(tier1, "create_refund", { charge: "ch_demo_0003", amount: 300 });
    expect(over.status).toBe(403);
    expect(over.body.reason).toBe(
      "budget tier1-daily: support-bot-1's EUR 98.00 of EUR 100.00 is spent this day; this call (EUR 3.00) would exceed it; EUR 2.00 left",
    );
    expect(stripe.requests.length).toBe(before);
  });

  test("a per-session cap needs the session's id, counts per session, and gives back what did not go through", async () => {
    const refund = (session: string | undefined, params: Record<string, unknown>) =>
      operation(bot3, "create_refund", params, session ? { "x-butler-session": session } : {});
    const none = await refund(undefined, { charge: "ch_1", amount: 100 });
    expect(none.status).toBe(403);
    expect(none.body.reason).toBe(
      "budget bot3-session caps spending per session: send the session's id as X-Butler-Session (over MCP, call within an MCP session)",
    );
    expect((await refund("s1", { charge: "ch_1", amount: 600 })).status).toBe(200);
    const second = await refund("s1", { charge: "ch_1", amount: 600 });
    expect(second.status).toBe(403);
    expect(second.body.reason).toContain("EUR 6.00 of EUR 10.00 is spent this session");
    expect((await refund("s2", { charge: "ch_1", amount: 600 })).status).toBe(200);
    // Stripe refuses a refund without a charge: the reservation is released, the session keeps its room.
    expect((await refund("s3", { amount: 900 })).status).toBe(400);
    expect((await refund("s3", { charge: "ch_1", amount: 900 })).status).toBe(200);
  });

  test("bad input is refused before anything is decided or sent", async () => {
    const before = stripe.requests.length;
    const r = await operation(tier1, "create_payment_intent", { amount: "lots" });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toBe(
      "create_payment_intent: params.amount: must be an integer; params.currency: is required",
    );
    expect((await operation(tier1, "no_such_operation", {})).status).toBe(404);
    const unknown = await proxy(tier1, "POST", "/v1/transfers", { amount: "1" });
    expect(unknown.status).toBe(403);
    expect(unknown.body.reason).toBe(
      "stripe has no operation for POST /v1/transfers; the gateway forwards only the calls its spec describes",
    );
    const noToken = await fetch(`${s.url}/v1/proxy/stripe/v1/charges`);
    expect(noToken.status).toBe(401);
    expect(stripe.requests.length).toBe(before);
  });

  test("an upstream that cannot be reached is a 502 with the reason; a missing credential a 503", async () => {
    const res = await fetch(`${s.url}/v1/providers/revolut/operations/list_transactions`, {
      method: "POST",
      headers: { authorization: `Bearer ${tier1}`, "content-type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(502);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(
      /^could not reach revolut: ECONNREFUSED/,
    );
    const wise = await fetch(`${s.url}/v1/providers/wise/operations/list_transfers`, {
      method: "POST",
      headers: { authorization: `Bearer ${tier1}`, "content-type": "application/json" },
      body: JSON.stringify({ params: { profile_id: "p1" } }),
    });
    expect(wise.status).toBe(503);
    expect(((await wise.json()) as { error: { message: string } }).error.message).toContain("WISE_API_TOKEN");
  });

  test("a credential stored with butler credentials set is used upstream, encrypted at rest, never shown", async () => {
    const secret = "wise-secret-7d1f";
    expect((await s.cli(["credentials", "set", "WISE_API_TOKEN"], "")).code).toBe(2);
    const set = await s.cli(["credentials", "set", "WISE_API_TOKEN", "--json"], `${secret}\n`);
    expect(set.code).toBe(0);
    expect(JSON.parse(set.stdout)).toEqual({ name: "WISE_API_TOKEN", created: true });
    const list = await s.cli(["credentials", "list", "--json"]);
    expect(JSON.parse(list.stdout).credentials).toEqual([
      expect.objectContaining({ name: "WISE_API_TOKEN", updated_by: "admin-api" }),
    ]);
    expect(list.stdout).not.toContain(secret);
    // Wise is pointed at the stand-in, which records what it was sent (and refuses the key).
    const res = await fetch(`${s.url}/v1/providers/wise/operations/list_transfers`, {
      method: "POST",
      headers: { authorization: `Bearer ${tier1}`, "content-type": "application/json" },
      body: JSON.stringify({ params: { profile_id: "p1" } }),
    });
    expect(res.status).toBe(401);
    const seen = stripe.requests.at(-1)!;
    expect(seen.path).toBe("/profiles/p1/transfers");
    expect(seen.headers.authorization).toBe(`Bearer ${secret}`);
    expect(await res.text()).not.toContain(secret);
    const { sql } = await import("drizzle-orm");
    const rows = await s.server.services.database.db.execute(sql`SELECT * FROM credentials`);
    expect(JSON.stringify(rows)).not.toContain(secret);
    const audit = await s.cli(["audit", "export"]);
    expect(audit.stdout).not.toContain(secret);
    expect(audit.stdout).toContain('"type":"credential.created"');
    expect((await s.cli(["credentials", "delete", "WISE_API_TOKEN"])).code).toBe(0);
    expect((await s.cli(["credentials", "delete", "WISE_API_TOKEN"])).code).toBe(1);
  });

  test("webhooks: a good Stripe or Revolut signature is audited; a bad or stale one is refused and audited", async () => {
    const body = JSON.stringify({
      id: "evt_1Stripe",
      type: "charge.refunded",
      data: { object: { id: "ch_1" } },
    });
    const now = Math.floor(Date.now() / 1000);
    const sign = (secret: string, text: string) => createHmac("sha256", secret).update(text).digest("hex");
    const post = (provider: string, headers: Record<string, string>, text = body) =>
      fetch(`${s.url}/v1/webhooks/${provider}`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: text,
      });
    const good = await post("stripe", {
      "stripe-signature": `t=${now},v1=${sign("whsec_test_secret", `${now}.${body}`)}`,
    });
    expect(good.status).toBe(200);
    expect(await good.json()).toEqual({
      received: true,
      duplicate: false,
      event_id: "evt_1Stripe",
      event_type: "charge.refunded",
      reactions: [],
    });
    const forged = await post("stripe", {
      "stripe-signature": `t=${now},v1=${sign("not-the-secret", `${now}.${body}`)}`,
    });
    expect(forged.status).toBe(400);
    const old = now - 3600;
    const stale = await post("stripe", {
      "stripe-signature": `t=${old},v1=${sign("whsec_test_secret", `${old}.${body}`)}`,
    });
    expect(stale.status).toBe(400);
    expect(((await stale.json()) as { error: { message: string } }).error.message).toContain("300 s");
    // The body is what is signed: one changed byte and the same signature fails.
    const altered = await post(
      "stripe",
      { "stripe-signature": `t=${now},v1=${sign("whsec_test_secret", `${now}.${body}`)}` },
      body.replace("ch_1", "ch_2"),
    );
    expect(altered.status).toBe(400);
    const ms = String(Date.now());
    const rev = JSON.stringify({ event: "TransactionCreated", data: { id: "txn_1", card_id: "card_1" } });
    const revolut = await post(
      "revolut",
      {
        "revolut-request-timestamp": ms,
        "revolut-signature": `v1=${sign("revolut_test_secret", `v1.${ms}.${rev}`)}`,
      },
      rev,
    );
    expect(revolut.status).toBe(200);
    expect(await revolut.json()).toEqual({
      received: true,
      duplicate: false,
      event_id: "txn_1",
      event_type: "TransactionCreated",
      reactions: [],
    });
    expect((await post("wise", {})).status).toBe(404);
    const audit = (await s.cli(["audit", "export"])).stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .filter((e) => e.type.startsWith("webhook."));
    expect(audit.map((e) => `${e.type}:${e.provider}`)).toEqual([
      "webhook.received:stripe",
      "webhook.rejected:stripe",
      "webhook.rejected:stripe",
      "webhook.rejected:stripe",
      "webhook.received:revolut",
    ]);
    expect(audit[1].reason).toBe("the signature does not match");
  });
});
