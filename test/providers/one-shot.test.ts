import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import Stripe from "stripe";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startStandInStripe } from "../../examples/stand-in-stripe.js";
import { ENGINE } from "../helpers/db.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const PROVIDERS_DIR = fileURLToPath(new URL("../../providers", import.meta.url));
const STRIPE_KEY = "sk_test_butler_only_4242";

const PAYMENTS = `project: project-payments
providers: [stripe, revolut]
agents: [payer-1, payer-2]
grants:
  - id: revolut-payments
    service: revolut
    actions: [payments:create]
    agents: [payer-1]
  - id: payments
    service: stripe
    actions: [payment_intents:create]
    constraints:
      currency: { in: [eur, usd] }
  - id: buckets
    service: aws
    actions: [s3:DeleteObject]
    resources: ["arn:aws:s3:::scratch/*"]
require_approval:
  - id: large-payments
    actions: ["stripe:payment_intents:create"]
    when:
      amount: { min: 50001 }
  - id: deletes
    actions: ["aws:s3:DeleteObject"]
approvers:
  - id: jordan
settings:
  approvals: { high: 1 }
`;

/** One-shot approvals: a person approves exactly one call, once, however often the agent retries. */
describe(`one-shot approvals (${ENGINE})`, () => {
  let stripe: Awaited<ReturnType<typeof startStandInStripe>>;
  let s: TestServer;
  let payer1: string;
  let payer2: string;
  let jordan: string;
  /** A stand-in Revolut that records what reaches it. */
  const revolutSeen: { path: string; headers: IncomingHttpHeaders; body: string }[] = [];
  const revolut = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => {
      body += c;
    });
    req.on("end", () => {
      revolutSeen.push({ path: req.url ?? "", headers: req.headers, body });
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ id: `pay_${revolutSeen.length}`, state: "pending" }));
    });
  });

  beforeAll(async () => {
    stripe = await startStandInStripe(STRIPE_KEY);
    await new Promise<void>((r) => revolut.listen(0, "127.0.0.1", r));
    const revolutUrl = `http://127.0.0.1:${(revolut.address() as AddressInfo).port}`;
    s = await startTestServer({
      policies: { "project-payments.yaml": PAYMENTS },
      env: {
        PROVIDERS_DIR,
        BUTLER_PROVIDER_URLS: `stripe=${stripe.url},revolut=${revolutUrl}`,
        BUTLER_PROVIDER_PORTS: "stripe=0",
        STRIPE_API_KEY: STRIPE_KEY,
        REVOLUT_ACCESS_TOKEN: "revolut-token",
      },
    });
    payer1 = await s.agentToken("payer-1", "project-payments");
    payer2 = await s.agentToken("payer-2", "project-payments");
    jordan = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
  });
  afterAll(async () => {
    await s?.cleanup();
    await stripe?.close();
    await new Promise((r) => revolut.close(r));
  });

  /** A payment the way stripe-node sends it: form-encoded, to the proxy. */
  async function pay(token: string, form: Record<string, string>, headers: Record<string, string> = {}) {
    const res = await fetch(`${s.url}/v1/proxy/stripe/v1/payment_intents`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/x-www-form-urlencoded",
        ...headers,
      },
      body: new URLSearchParams(form).toString(),
    });
    return { status: res.status, body: JSON.parse(await res.text()) };
  }

  async function api(token: string, method: string, path: string, body?: unknown) {
    const res = await fetch(`${s.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: JSON.parse(await res.text()) };
  }

  test("params PostgreSQL cannot store (NUL, unpaired surrogates) are a 400 naming them, never a 500", async () => {
    const before = stripe.requests.length;
    const large = { amount: "60000", currency: "eur" };
    // Through the proxy (form or query) and the operations API, in values and in names.
    for (const form of [
      { ...large, description: "nul \u0000 here" },
      { ...large, "metadata[\u0000]": "x" },
    ]) {
      const r = await fetch(`${s.url}/v1/proxy/stripe/v1/payment_intents`, {
        method: "POST",
        headers: { authorization: `Bearer ${payer1}`, "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams(form).toString(),
      });
      expect({ form, status: r.status }).toEqual({ form, status: 400 });
    }
    const query = await fetch(`${s.url}/v1/proxy/stripe/v1/payment_intents?description=%00`, {
      method: "POST",
      headers: { authorization: `Bearer ${payer1}`, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(large).toString(),
    });
    expect(query.status).toBe(400);
    for (const params of [
      { amount: 60000, currency: "eur", metadata: { note: "nul \u0000" } },
      { amount: 60000, currency: "eur", metadata: { "k\u0000": "v" } },
      { amount: 60000, currency: "eur", description: "\udc00" },
    ]) {
      const r = await api(payer1, "POST", "/v1/providers/stripe/operations/create_payment_intent", {
        params,
      });
      expect({ params, status: r.status }).toEqual({ params, status: 400 });
      expect(r.body.error.message).toMatch(
        /^body\.params: the (text|name) at .*(metadata|description).* holds a NUL character or an unpaired surrogate/,
      );
    }
    expect(stripe.requests.length).toBe(before);
  });

  test("/v1/authorize and /v1/access-requests refuse params PostgreSQL cannot store (400, nothing filed)", async () => {
    for (const params of [{ version: "3\u0000" }, { ["v\u0000"]: "3" }, { version: "\ud800" }]) {
      const call = { action: "aws:s3:DeleteObject", resource: "arn:aws:s3:::scratch/nul.csv", params };
      const denied = await api(payer2, "POST", "/v1/authorize", call);
      expect({ params, status: denied.status }).toEqual({ params, status: 400 });
      expect(denied.body.error.message).toMatch(/^body\.params: .*NUL/);
      // Asked with the denial of exactly that call (as the hint says): nothing can be stored.
      const filed = await api(payer2, "POST", "/v1/access-requests", {
        reason: "nul",
        denial_event_id: denied.body.event_id ?? "evt_0000000000000000",
        params,
      });
      expect({ params, status: filed.status }).toEqual({ params, status: 400 });
    }
  });

  test("a large payment needs a person; once approved it executes exactly once however often the agent retries", async () => {
    const form = { amount: "60000", currency: "eur", description: "supplier invoice 7731" };
    const before = stripe.created.payment_intents;

    // Small payments go straight through: the rule only covers amounts above 50000.
    const small = await pay(payer1, { amount: "4000", currency: "eur" });
    expect(small.status).toBe(200);
    expect(stripe.created.payment_intents).toBe(before + 1);

    const first = await pay(payer1, form, {
      "x-butler-reason": encodeURIComponent("Invoice 7731 is due today"),
    });
    expect(first.status).toBe(403);
    expect(first.body).toMatchObject({
      decision: "DENY",
      code: "approval_required",
      reason:
        "a person must approve each stripe:payment_intents:create call with amount 60000 (require_approval large-payments of project-payments)",
      approval_required: { status: "pending", existing: false },
    });
    const requestId = first.body.approval_required.request_id as string;
    expect(first.body.approval_required.url).toBe(`${s.url}/v1/access-requests/${requestId}`);
    expect(stripe.created.payment_intents).toBe(before + 1);

    // Asking again before anyone decided finds the same request; nothing reaches Stripe.
    const again = await pay(payer1, form);
    expect(again.status).toBe(403);
    expect(again.body.approval_required).toMatchObject({ request_id: requestId, existing: true });

    // The approver sees exactly the call: its parameters, and that it is not a policy change.
    const seen = await api(jordan, "GET", `/v1/access-requests/${requestId}`);
    expect(seen.body).toMatchObject({
      kind: "one_shot",
      status: "pending",
      reason: "Invoice 7731 is due today",
      action: "stripe:payment_intents:create",
      call: { operation: "stripe create_payment_intent", params: form },
    });
    expect(seen.body.proposal.diff).toContain("One call, once: not a policy change");
    expect(seen.body.proposal.diff).toContain('amount: "60000"');

    const approved = await api(jordan, "POST", `/v1/access-requests/${requestId}/approve`, {});
    expect(approved.status).toBe(200);
    expect(approved.body.access_request ?? approved.body).toMatchObject({ status: "approved" });

    // Five retries at once and three more after: exactly one goes through.
    const burst = await Promise.all(Array.from({ length: 5 }, () => pay(payer1, form)));
    const later = [];
    for (let i = 0; i < 3; i++) later.push(await pay(payer1, form));
    const all = [...burst, ...later];
    const through = all.filter((r) => r.status === 200);
    expect(through).toHaveLength(1);
    expect(through[0]!.body).toMatchObject({ object: "payment_intent", amount: 60000 });
    expect(stripe.created.payment_intents).toBe(before + 2);
    for (const r of all.filter((x) => x.status !== 200)) {
      expect(r.status).toBe(403);
      expect(r.body.reason).toMatch(
        new RegExp(`^the one-shot approval ${requestId} of this exact call was used at `),
      );
    }

    // It went out with the key of the call that was approved.
    const sent = stripe.requests.filter(
      (r) => r.path === "/v1/payment_intents" && r.body.includes("amount=60000"),
    );
    expect(sent.map((r) => r.headers["idempotency-key"])).toEqual([`butler-${first.body.event_id}`]);

    // Another amount, or another agent with the same call, is a new question for a person.
    const other = await pay(payer1, { ...form, amount: "60001" });
    expect(other.body).toMatchObject({ code: "approval_required" });
    expect(other.body.approval_required.request_id).not.toBe(requestId);
    const otherAgent = await pay(payer2, form);
    expect(otherAgent.body).toMatchObject({ code: "approval_required" });
    expect(otherAgent.body.approval_required.request_id).not.toBe(requestId);
    expect(stripe.created.payment_intents).toBe(before + 2);

    // The whole story is in the audit log, in order: one use, one allowed call.
    const lines = (await s.cli(["audit", "export", "--project", "project-payments"])).stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .filter((l) => (l.request_id === requestId || l.grant_id === requestId) && l.type !== "agent.notified");
    expect(lines.map((l) => l.type)).toEqual([
      "access_request.filed",
      "one_shot.proposed",
      "access_request.approved",
      "grant.one_shot",
      "grant.used",
      "gateway.allowed",
    ]);
    const allowed = lines.at(-1);
    expect(allowed).toMatchObject({ one_shot: true, approval_rule: "large-payments", approved_by: "jordan" });
  });

  test("the operations API honours X-Butler-Reason as the proxy does (percent-encoded, checked the same way)", async () => {
    const params = { amount: 70001, currency: "eur", description: "reason via header" };
    const call = (headers: Record<string, string>, body: Record<string, unknown> = { params }) =>
      fetch(`${s.url}/v1/providers/stripe/operations/create_payment_intent`, {
        method: "POST",
        headers: { authorization: `Bearer ${payer2}`, "content-type": "application/json", ...headers },
        body: JSON.stringify(body),
      }).then(async (r) => ({ status: r.status, body: JSON.parse(await r.text()) }));
    const reason = "Rechnung für März, fällig heute";
    const first = await call({ "x-butler-reason": encodeURIComponent(reason) });
    expect(first.status).toBe(403);
    const requestId = first.body.approval_required.request_id as string;
    const seen = await api(jordan, "GET", `/v1/access-requests/${requestId}`);
    expect(seen.body).toMatchObject({ kind: "one_shot", status: "pending", reason });

    // The same reason in the body and the header is one reason; two different ones are refused.
    const same = await call({ "x-butler-reason": encodeURIComponent(reason) }, { params, reason });
    expect(same.body.approval_required).toMatchObject({ request_id: requestId, existing: true });
    const two = await call({ "x-butler-reason": "header" }, { params, reason: "body" });
    expect(two.status).toBe(400);
    expect(two.body.error.message).toBe(
      "the reason is both in the body and in X-Butler-Reason, and they differ: send it once",
    );
    // A header that is not percent-encoded text is refused with the proxy's words.
    const bad = await call({ "x-butler-reason": "%E0%A4%A" });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/^X-Butler-Reason: must be at most 2000 characters/);
  });

  test("when Stripe fails, the approval is given back and the retry reuses the approved call's key: still one payment", async () => {
    const form = { amount: "75000", currency: "usd" };
    const first = await pay(payer1, form);
    const requestId = first.body.approval_required.request_id as string;
    await api(jordan, "POST", `/v1/access-requests/${requestId}/approve`, {});
    const before = stripe.created.payment_intents;

    stripe.failNextWrites(2); // the gateway's own retry fails too
    const failed = await pay(payer1, form);
    expect(failed.status).toBe(502);
    expect(failed.body.error.message).toBe("stripe answered HTTP 503");
    expect(stripe.created.payment_intents).toBe(before);

    const retried = await pay(payer1, form);
    expect(retried.status).toBe(200);
    const replayed = await pay(payer1, form);
    expect(replayed.status).toBe(403);
    expect(stripe.created.payment_intents).toBe(before + 1);
    const keys = stripe.requests
      .filter((r) => r.path === "/v1/payment_intents" && r.body.includes("amount=75000"))
      .map((r) => r.headers["idempotency-key"]);
    expect(keys).toEqual(Array(3).fill(`butler-${first.body.event_id}`));
  });

  test("the same rule holds for /v1/authorize: ask with the denied call's params, then one ALLOW", async () => {
    const call = {
      action: "aws:s3:DeleteObject",
      resource: "arn:aws:s3:::scratch/report.csv",
      params: { version: "3" },
    };
    const denied = await api(payer2, "POST", "/v1/authorize", call);
    expect(denied.body).toMatchObject({
      decision: "DENY",
      code: "approval_required",
      request_access: { body: { denial_event_id: denied.body.event_id, params: { version: "3" } } },
    });
    const ask = { reason: "clean up", denial_event_id: denied.body.event_id };
    const wrong = await api(payer2, "POST", "/v1/access-requests", { ...ask, params: { version: "4" } });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error.message).toMatch(/^params: these are not the parameters of the denied call/);
    const grantAsk = await api(payer2, "POST", "/v1/access-requests", {
      ...ask,
      params: { version: "3" },
      action: "aws:s3:*",
    });
    expect(grantAsk.status).toBe(400);

    const filed = await api(payer2, "POST", "/v1/access-requests", { ...ask, params: { version: "3" } });
    expect(filed.status).toBe(201);
    expect(filed.body.access_request).toMatchObject({ kind: "one_shot", call: { params: { version: "3" } } });
    const id = filed.body.access_request.id as string;
    // An agent cannot approve its own request.
    expect((await api(payer2, "POST", `/v1/access-requests/${id}/approve`, {})).status).toBe(403);
    await api(jordan, "POST", `/v1/access-requests/${id}/approve`, {});

    expect(
      (await api(payer2, "POST", "/v1/authorize", { ...call, params: { version: "4" } })).body.code,
    ).toBe("approval_required");
    const once = await api(payer2, "POST", "/v1/authorize", call);
    expect(once.body).toMatchObject({
      decision: "ALLOW",
      grant_id: id,
      one_shot: { grant_id: id, idempotency_key: null },
    });
    const twice = await api(payer2, "POST", "/v1/authorize", call);
    expect(twice.body).toMatchObject({ decision: "DENY", code: "one_shot_used" });
    // The approval is not a policy change: nothing else became allowed.
    const view = await api(jordan, "GET", `/v1/access-requests/${id}`);
    expect(view.body.grant).toMatchObject({ id, used_at: expect.any(String) });
    const usedRevoke = await api(jordan, "DELETE", `/v1/grants/${id}`, {});
    expect(usedRevoke.status).toBe(409);
    expect(usedRevoke.body.error.code).toBe("GRANT_ENDED");
    expect(usedRevoke.body.error.message).toMatch(/was already used at .*; there is nothing left to revoke$/);

    // An approval not yet used can be revoked: the call is a question for a person again.
    const v5 = { ...call, params: { version: "5" } };
    const d5 = await api(payer2, "POST", "/v1/authorize", v5);
    const r5 = await api(payer2, "POST", "/v1/access-requests", {
      reason: "clean up v5",
      denial_event_id: d5.body.event_id,
      params: { version: "5" },
    });
    const id5 = r5.body.access_request.id as string;
    await api(jordan, "POST", `/v1/access-requests/${id5}/approve`, {});
    expect((await api(jordan, "DELETE", `/v1/grants/${id5}`, { reason: "wrong bucket" })).status).toBe(200);
    expect((await api(payer2, "POST", "/v1/authorize", v5)).body).toMatchObject({
      decision: "DENY",
      code: "approval_required",
    });
    expect((await api(payer2, "GET", `/v1/access-requests/${id5}`)).body.grant).toMatchObject({
      revoked_at: expect.any(String),
      used_at: null,
    });
  });

  test("an operation marked approval: each_call needs a person for every call, even with a grant", async () => {
    const payment = {
      amount: 1200,
      currency: "EUR",
      receiver: { counterparty_id: "cp_1", account_id: "acc_9" },
      request_id: "inv-88",
    };
    const call = (token: string, params: Record<string, unknown>) =>
      api(token, "POST", "/v1/providers/revolut/operations/create_payment", {
        params,
        reason: "pay the printer",
      });
    const first = await call(payer1, payment);
    expect(first.status).toBe(403);
    expect(first.body).toMatchObject({
      code: "approval_required",
      reason: "a person must approve each call of revolut create_payment (approval: each_call in its spec)",
    });
    expect(revolutSeen).toHaveLength(0);
    const id = first.body.approval_required.request_id as string;
    expect((await api(jordan, "GET", `/v1/access-requests/${id}`)).body).toMatchObject({
      reason: "pay the printer",
      call: { operation: "revolut create_payment", params: payment },
    });
    await api(jordan, "POST", `/v1/access-requests/${id}/approve`, {});

    // Keys in another order are the same call.
    const reordered = Object.fromEntries(Object.entries(payment).reverse());
    expect((await call(payer1, reordered)).status).toBe(200);
    expect((await call(payer1, payment)).body).toMatchObject({ code: "one_shot_used" });
    expect(revolutSeen).toHaveLength(1);
    expect(revolutSeen[0]!.headers["idempotency-key"]).toBe(`butler-${first.body.event_id}`);
    expect(revolutSeen[0]!.headers.authorization).toBe("Bearer revolut-token");

    // Without a grant the write group denies; a person can still let this one payment through.
    const ungranted = await call(payer2, payment);
    expect(ungranted.body).toMatchObject({ code: "approval_required" });
    await api(
      jordan,
      "POST",
      `/v1/access-requests/${ungranted.body.approval_required.request_id}/approve`,
      {},
    );
    expect((await call(payer2, payment)).status).toBe(200);
    expect((await call(payer2, payment)).status).toBe(403);
    expect(revolutSeen).toHaveLength(2);
  });

  test("an unmodified stripe-node, pointed at the gateway's Stripe port with the agent's Butler token", async () => {
    const at = new URL(s.server.providerUrls.stripe!);
    const client = new Stripe(payer1, { host: at.hostname, port: Number(at.port), protocol: "http" });
    const seenBefore = stripe.requests.length;

    const small = await client.paymentIntents.create({ amount: 2500, currency: "eur" });
    expect(small).toMatchObject({ object: "payment_intent", amount: 2500, currency: "eur" });

    // A DENY is an error the SDK raises (never a body it would take for Stripe's answer).
    const large = { amount: 90000, currency: "eur" };
    const asked = (await client.paymentIntents.create(large).catch((e: unknown) => e)) as InstanceType<
      typeof Stripe.errors.StripePermissionError
    >;
    expect(asked).toBeInstanceOf(Stripe.errors.StripePermissionError);
    expect(asked.code).toBe("approval_required");
    expect(asked.message).toMatch(
      /^a person must approve each stripe:payment_intents:create call with amount 90000/,
    );
    const requestId = (asked.raw as { request_id: string }).request_id;
    expect(requestId).toMatch(/^req_/);
    await api(jordan, "POST", `/v1/access-requests/${requestId}/approve`, {});

    expect(await client.paymentIntents.create(large)).toMatchObject({ amount: 90000 });
    const spent = await client.paymentIntents.create(large).catch((e: unknown) => e);
    expect(spent).toMatchObject({ code: "one_shot_used", statusCode: 403 });

    // A call the spec does not describe is denied, never forwarded.
    const unknown = await client.customers.del("cus_123").catch((e: unknown) => e);
    expect(unknown).toMatchObject({ code: "unknown_operation", statusCode: 403 });

    const reached = stripe.requests.slice(seenBefore);
    expect(reached.map((r) => `${r.method} ${r.path}`)).toEqual([
      "POST /v1/payment_intents",
      "POST /v1/payment_intents",
    ]);
    for (const r of reached) {
      expect(r.headers.authorization).toBe(`Bearer ${STRIPE_KEY}`);
      expect(JSON.stringify(r.headers)).not.toContain(payer1);
    }
  });
});
