import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startStandInStripe } from "../../examples/stand-in-stripe.js";
import { ENGINE } from "../helpers/db.js";
import { mcpTransport } from "../helpers/mcp.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const PROVIDERS_DIR = fileURLToPath(new URL("../../providers", import.meta.url));
const STRIPE_KEY = "sk_test_entry_points_01";
const ENTRY_POINTS = ["rest", "proxy", "mcp"] as const;
type EntryPoint = (typeof ENTRY_POINTS)[number];

const budget = (e: string) => `  - id: daily-${e}
    agents: [payer-${e}]
    period: day
    currency: EUR
    limit: 100000`;

const PAYMENTS = `project: project-payments
providers: [stripe]
agents: [${ENTRY_POINTS.map((e) => `payer-${e}, payer-idem-${e}`).join(", ")}, payer-waiting, payer-session]
grants:
  - id: payments
    service: stripe
    actions: [payment_intents:create]
    constraints:
      currency: { in: [eur, usd] }
require_approval:
  - id: large-payments
    actions: ["stripe:payment_intents:create"]
    when:
      amount: { min: 50001 }
budgets:
${[...ENTRY_POINTS, "waiting"].map(budget).join("\n")}
${ENTRY_POINTS.map((e) => budget(`idem-${e}`).replace("limit: 100000", "limit: 30000")).join("\n")}
  - id: per-session
    agents: [payer-session]
    period: session
    currency: EUR
    limit: 20000
approvers:
  - id: jordan
settings:
  approvals: { high: 1 }
`;

/** What a call came to, the same words for every entry point. */
interface Outcome {
  /** allowed, denied:<code>, or refused (the call was not well formed). */
  result: string;
  /** For approval_required: the one-shot request filed. */
  requestId?: string;
}

/**
 * The same calls through the three ways an agent reaches a provider: the REST operation endpoint,
 * the transparent proxy and MCP. Nothing one enforces may be skipped by another: each step below
 * must come out the same through all three, and reach the provider exactly when it is allowed.
 */
describe(`one pipeline behind REST, the proxy and MCP (${ENGINE})`, () => {
  let stripe: Awaited<ReturnType<typeof startStandInStripe>>;
  let s: TestServer;
  let jordan: string;
  const tokens = {} as Record<EntryPoint, string>;
  const clients: Client[] = [];
  let mcp: Client;

  beforeAll(async () => {
    stripe = await startStandInStripe(STRIPE_KEY);
    s = await startTestServer({
      policies: { "project-payments.yaml": PAYMENTS },
      env: { PROVIDERS_DIR, BUTLER_PROVIDER_URLS: `stripe=${stripe.url}`, STRIPE_API_KEY: STRIPE_KEY },
    });
    for (const e of ENTRY_POINTS) tokens[e] = await s.agentToken(`payer-${e}`, "project-payments");
    jordan = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
    mcp = new Client({ name: "entry-points", version: "1.0.0" });
    clients.push(mcp);
    await mcp.connect(mcpTransport(s.url, tokens.mcp));
  });
  afterAll(async () => {
    for (const c of clients) await c.close();
    await s?.cleanup();
    await stripe?.close();
  });

  /** The HTTP answer of REST and the proxy, as an Outcome. */
  async function fromHttp(res: Response): Promise<Outcome> {
    const body = (await res.json()) as {
      decision?: string;
      code?: string;
      approval_required?: { request_id?: string };
    };
    if (res.status === 200) return { result: "allowed" };
    if (res.status === 403 && body.decision === "DENY")
      return { result: `denied:${body.code}`, requestId: body.approval_required?.request_id };
    return { result: res.status === 400 ? "refused" : `http ${res.status}` };
  }

  /** A payment intent, the way each entry point takes it, with why the agent makes it if given. */
  async function pay(
    e: EntryPoint,
    params: { amount: number | string; currency: string },
    reason?: string,
    as?: { token: string; client: Client; key?: string },
  ): Promise<Outcome> {
    const key = as?.key;
    const auth = {
      authorization: `Bearer ${as?.token ?? tokens[e]}`,
      ...(key === undefined || e === "mcp" ? {} : { "idempotency-key": key }),
    };
    if (e === "rest")
      return fromHttp(
        await fetch(`${s.url}/v1/providers/stripe/operations/create_payment_intent`, {
          method: "POST",
          headers: { ...auth, "content-type": "application/json" },
          body: JSON.stringify({ params, ...(reason === undefined ? {} : { reason }) }),
        }),
      );
    if (e === "proxy")
      return fromHttp(
        await fetch(`${s.url}/v1/proxy/stripe/v1/payment_intents`, {
          method: "POST",
          headers: {
            ...auth,
            "content-type": "application/x-www-form-urlencoded",
            ...(reason === undefined ? {} : { "x-butler-reason": encodeURIComponent(reason) }),
          },
          body: new URLSearchParams({ amount: String(params.amount), currency: params.currency }).toString(),
        }),
      );
    const meta = {
      ...(reason === undefined ? {} : { "butler/reason": reason }),
      ...(key === undefined ? {} : { "butler/idempotency_key": key }),
    };
    const r = (await (as?.client ?? mcp).callTool({
      name: "stripe_create_payment_intent",
      arguments: params,
      ...(Object.keys(meta).length ? { _meta: meta } : {}),
    })) as CallToolResult;
    const body = r.structuredContent as
      | { decision?: string; code?: string; approval_required?: { request_id?: string } }
      | undefined;
    if (!r.isError) return { result: "allowed" };
    if (body?.decision === "DENY")
      return { result: `denied:${body.code}`, requestId: body.approval_required?.request_id };
    // A malformed call is a tool error with the code REST answers 400 with; anything else is not.
    return { result: body?.code === "INVALID_INPUT" ? "refused" : `tool error ${JSON.stringify(r.content)}` };
  }

  /** Each step's call, what it must come to everywhere, and whether the provider sees it. */
  const steps: {
    name: string;
    params: { amount: number | string; currency: string };
    result: string;
    sent: boolean;
  }[] = [
    {
      name: "a currency the grant's constraint refuses",
      params: { amount: 1000, currency: "gbp" },
      result: "denied:constraint_failed",
      sent: false,
    },
    {
      name: "an amount that is not a whole number",
      params: { amount: "lots", currency: "eur" },
      result: "refused",
      sent: false,
    },
    {
      // PostgreSQL cannot store it (in the access request or the one-shot grant a denial files).
      name: "a currency holding a NUL character",
      params: { amount: 60000, currency: "eur\u0000" },
      result: "refused",
      sent: false,
    },
    {
      name: "a payment within the grant and the budget",
      params: { amount: 15000, currency: "eur" },
      result: "allowed",
      sent: true,
    },
    {
      name: "a large payment: a person must approve it",
      params: { amount: 70000, currency: "eur" },
      result: "denied:approval_required",
      sent: false,
    },
  ];

  for (const step of steps)
    test(`${step.name}: ${step.result} through REST, the proxy and MCP alike`, async () => {
      for (const e of ENTRY_POINTS) {
        const before = stripe.requests.length;
        const got = await pay(e, step.params);
        expect(got.result, `${e}: ${step.name}`).toBe(step.result);
        expect(stripe.requests.length - before, `${e}: reached the provider`).toBe(step.sent ? 1 : 0);
      }
    });

  test("a reason PostgreSQL cannot store (NUL) is refused everywhere before anything is filed", async () => {
    for (const e of ENTRY_POINTS) {
      const before = stripe.requests.length;
      const got = await pay(e, { amount: 60000, currency: "eur" }, "refund for order 7\u0000");
      expect(got.result, e).toBe("refused");
      expect(stripe.requests.length, e).toBe(before);
    }
  });

  test("an idempotency key makes a retried payment one payment everywhere: passed on, and counted once against the budget", async () => {
    for (const e of ENTRY_POINTS) {
      const token = await s.agentToken(`payer-idem-${e}`, "project-payments");
      const client = new Client({ name: `idem-${e}`, version: "1.0.0" });
      clients.push(client);
      await client.connect(mcpTransport(s.url, token));
      const as = { token, client, key: `order-7-${e}` };
      const before = stripe.requests.length;
      expect((await pay(e, { amount: 20000, currency: "eur" }, undefined, as)).result, e).toBe("allowed");
      expect((await pay(e, { amount: 20000, currency: "eur" }, undefined, as)).result, `${e} retried`).toBe(
        "allowed",
      );
      // Both reached Stripe with the same key (Stripe answers the second from its replay).
      const sent = stripe.requests.slice(before).map((r) => r.headers["idempotency-key"]);
      expect(sent.length, e).toBe(2);
      expect(sent[0], e).toBeDefined();
      expect(sent[1], e).toBe(sent[0]);
      // Counted once: 20,000 of 30,000 spent, so 10,000 more fits and 1 more does not.
      const fresh = { token, client, key: `order-8-${e}` };
      expect((await pay(e, { amount: 10000, currency: "eur" }, undefined, fresh)).result, e).toBe("allowed");
      expect((await pay(e, { amount: 1, currency: "eur" }, undefined, { token, client })).result, e).toBe(
        "denied:budget_exceeded",
      );
    }
  });

  test("the approved large payment goes through once, and not twice; over the budget is denied", async () => {
    for (const e of ENTRY_POINTS) {
      const asked = await pay(e, { amount: 70000, currency: "eur" });
      expect(asked.result, e).toBe("denied:approval_required");
      expect(asked.requestId, e).toMatch(/^req_/);
      const ok = await fetch(`${s.url}/v1/access-requests/${asked.requestId}/approve`, {
        method: "POST",
        headers: { authorization: `Bearer ${jordan}`, "content-type": "application/json" },
        body: "{}",
      });
      expect(ok.status, e).toBe(200);
      const before = stripe.requests.length;
      expect((await pay(e, { amount: 70000, currency: "eur" })).result, `${e}: the approved call`).toBe(
        "allowed",
      );
      expect((await pay(e, { amount: 70000, currency: "eur" })).result, `${e}: used once`).toBe(
        "denied:one_shot_used",
      );
      // 15,000 + 70,000 spent today of 100,000: 20,000 more does not fit.
      expect((await pay(e, { amount: 20000, currency: "eur" })).result, `${e}: over budget`).toBe(
        "denied:budget_exceeded",
      );
      expect(stripe.requests.length - before, `${e}: only the approved call reached the provider`).toBe(1);
    }
  });

  /** payer-waiting over MCP, asking for progress: a payment this large needs a person. */
  async function waitingCall(amount: number) {
    const client = new Client({ name: "entry-points-waiting", version: "1.0.0" });
    clients.push(client);
    await client.connect(mcpTransport(s.url, await s.agentToken("payer-waiting", "project-payments")));
    const messages: string[] = [];
    let firstProgress!: (m: string) => void;
    const waiting = new Promise<string>((resolve) => (firstProgress = resolve));
    const result = client.callTool(
      { name: "stripe_create_payment_intent", arguments: { amount, currency: "eur" } },
      undefined,
      {
        onprogress: (p) => {
          messages.push(p.message ?? "");
          firstProgress(p.message ?? "");
        },
        resetTimeoutOnProgress: true,
      },
    ) as Promise<CallToolResult>;
    // The first progress names the request the call waits for.
    const requestId = /req_[a-z0-9]{16}/.exec(await waiting)?.[0];
    expect(requestId).toBeDefined();
    return { result, requestId: requestId!, messages };
  }

  const decide = (id: string, verb: "approve" | "deny") =>
    fetch(`${s.url}/v1/access-requests/${id}/${verb}`, {
      method: "POST",
      headers: { authorization: `Bearer ${jordan}`, "content-type": "application/json" },
      body: "{}",
    });

  test("MCP: a call that needs a person waits for the decision, with progress, and goes through once approved", async () => {
    const before = stripe.requests.length;
    const { result, requestId, messages } = await waitingCall(60000);
    expect(stripe.requests.length).toBe(before);
    expect((await decide(requestId, "approve")).status).toBe(200);
    const r = await result;
    expect(r.isError, JSON.stringify(r.content)).toBeFalsy();
    expect(r.structuredContent).toMatchObject({ object: "payment_intent", amount: 60000 });
    expect(stripe.requests.length - before).toBe(1);
    expect(messages[0]).toContain(`waiting for a person to decide ${requestId}`);
  });

  test("MCP: a waiting call the person denies ends with the decision, and nothing is sent", async () => {
    const before = stripe.requests.length;
    // Another call (an identical one would be the approved call's second use).
    const { result, requestId } = await waitingCall(55000);
    expect((await decide(requestId, "deny")).status).toBe(200);
    const r = await result;
    expect(r.isError).toBe(true);
    expect(JSON.stringify(r.content)).toContain("The request was denied");
    expect(stripe.requests.length).toBe(before);
  });

  test("MCP: a per-session budget counts per MCP session", async () => {
    const token = await s.agentToken("payer-session", "project-payments");
    const session = async () => {
      const c = new Client({ name: "entry-points-session", version: "1.0.0" });
      clients.push(c);
      await c.connect(mcpTransport(s.url, token));
      return async (amount: number) => {
        const r = (await c.callTool({
          name: "stripe_create_payment_intent",
          arguments: { amount, currency: "eur" },
        })) as CallToolResult;
        return r.isError ? `denied:${(r.structuredContent as { code?: string }).code}` : "allowed";
      };
    };
    const first = await session();
    expect(await first(15000)).toBe("allowed");
    expect(await first(6000)).toBe("denied:budget_exceeded");
    // Another MCP session has its own budget.
    const second = await session();
    expect(await second(6000)).toBe("allowed");
  });
});

describe(`MCP: a wait for a person ends at MCP_APPROVAL_WAIT_SECONDS (${ENGINE})`, () => {
  let s: TestServer;
  let client: Client;
  beforeAll(async () => {
    s = await startTestServer({
      policies: { "project-payments.yaml": PAYMENTS },
      env: {
        PROVIDERS_DIR,
        BUTLER_PROVIDER_URLS: "stripe=http://127.0.0.1:9",
        STRIPE_API_KEY: STRIPE_KEY,
        MCP_APPROVAL_WAIT_SECONDS: "1",
      },
    });
    client = new Client({ name: "entry-points-timeout", version: "1.0.0" });
    await client.connect(mcpTransport(s.url, await s.agentToken("payer-waiting", "project-payments")));
  });
  afterAll(async () => {
    await client?.close();
    await s?.cleanup();
  });

  test("no decision in time: the DENY says the request stays open, and the request is still pending", async () => {
    let progressed = 0;
    const r = (await client.callTool(
      { name: "stripe_create_payment_intent", arguments: { amount: 60000, currency: "eur" } },
      undefined,
      { onprogress: () => progressed++, resetTimeoutOnProgress: true },
    )) as CallToolResult;
    expect(r.isError).toBe(true);
    expect(JSON.stringify(r.content)).toContain("No one decided within 1 s; the request stays open");
    expect(progressed).toBeGreaterThan(0);
    const id = (r.structuredContent as { approval_required: { request_id: string } }).approval_required
      .request_id;
    const seen = await fetch(`${s.url}/v1/access-requests/${id}`, {
      headers: { authorization: `Bearer ${await s.agentToken("payer-waiting", "project-payments")}` },
    });
    expect(await seen.json()).toMatchObject({ status: "pending" });
  });
});

describe(`MCP: stopping the server ends the calls waiting for a person (${ENGINE})`, () => {
  test("a call waiting up to 900 s does not hold the server's close, and is not made", async () => {
    const stripe = await startStandInStripe(STRIPE_KEY);
    const s = await startTestServer({
      policies: { "project-payments.yaml": PAYMENTS },
      env: {
        PROVIDERS_DIR,
        BUTLER_PROVIDER_URLS: `stripe=${stripe.url}`,
        STRIPE_API_KEY: STRIPE_KEY,
        MCP_APPROVAL_WAIT_SECONDS: "900",
      },
    });
    const client = new Client({ name: "entry-points-close", version: "1.0.0" });
    try {
      await client.connect(mcpTransport(s.url, await s.agentToken("payer-waiting", "project-payments")));
      let progressed!: () => void;
      const waiting = new Promise<void>((r) => (progressed = r));
      void client
        .callTool(
          { name: "stripe_create_payment_intent", arguments: { amount: 60000, currency: "eur" } },
          undefined,
          { onprogress: () => progressed(), resetTimeoutOnProgress: true },
        )
        .catch(() => {});
      await waiting;
      // Without the server ending the wait, this would take up to 900 s (the test's timeout is the bound).
      await s.cleanup();
      expect(stripe.requests).toHaveLength(0);
    } finally {
      await client.close();
      await stripe.close();
    }
  });

  test("another server of the same process stopping leaves this one's waiting calls alone", async () => {
    const stripe = await startStandInStripe(STRIPE_KEY);
    const env = { PROVIDERS_DIR, BUTLER_PROVIDER_URLS: `stripe=${stripe.url}`, STRIPE_API_KEY: STRIPE_KEY };
    const s = await startTestServer({ policies: { "project-payments.yaml": PAYMENTS }, env });
    const other = await startTestServer({ policies: { "project-payments.yaml": PAYMENTS }, env });
    const client = new Client({ name: "entry-points-other", version: "1.0.0" });
    try {
      await client.connect(mcpTransport(s.url, await s.agentToken("payer-waiting", "project-payments")));
      let progressed!: (m: string) => void;
      const waiting = new Promise<string>((r) => (progressed = r));
      const result = client.callTool(
        { name: "stripe_create_payment_intent", arguments: { amount: 60000, currency: "eur" } },
        undefined,
        { onprogress: (p) => progressed(p.message ?? ""), resetTimeoutOnProgress: true },
      ) as Promise<CallToolResult>;
      const requestId = /req_[a-z0-9]{16}/.exec(await waiting)![0];
      await other.cleanup();
      const { token: jordan } = await s.server.services.admin.createApproverToken("jordan");
      const ok = await fetch(`${s.url}/v1/access-requests/${requestId}/approve`, {
        method: "POST",
        headers: { authorization: `Bearer ${jordan}`, "content-type": "application/json" },
        body: "{}",
      });
      expect(ok.status).toBe(200);
      const r = await result;
      expect(r.isError, JSON.stringify(r.content)).toBeFalsy();
      expect(stripe.requests).toHaveLength(1);
    } finally {
      await client.close();
      await s.cleanup();
      await stripe.close();
    }
  });
});
