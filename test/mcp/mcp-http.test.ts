import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startStandInStripe } from "../../examples/stand-in-stripe.js";
import { ENGINE } from "../helpers/db.js";
import { mcpTransport } from "../helpers/mcp.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const PROVIDERS_DIR = fileURLToPath(new URL("../../providers", import.meta.url));
const BIN = fileURLToPath(new URL("../../bin/butler.js", import.meta.url));
const STRIPE_KEY = "sk_test_mcp_0000000001";

const SUPPORT = `project: project-support
providers: [stripe]
agents: [support-bot-1, support-bot-2]
grants:
  - id: small-payments
    service: stripe
    actions: [payment_intents:create]
    agents: [support-bot-2]
    constraints:
      amount: { max: 5000 }
approvers:
  - id: jordan
settings:
  approvals: { high: 1 }
  never_grant: ["stripe:issuing_*"]
`;

/** MCP at /mcp, driven by the SDK's own client over real HTTP. */
describe(`MCP over Streamable HTTP (${ENGINE})`, () => {
  let stripe: Awaited<ReturnType<typeof startStandInStripe>>;
  let s: TestServer;
  let bot1: string;
  let bot2: string;
  let jordan: string;
  const clients: Client[] = [];

  beforeAll(async () => {
    stripe = await startStandInStripe(STRIPE_KEY);
    s = await startTestServer({
      policies: { "project-support.yaml": SUPPORT },
      env: { PROVIDERS_DIR, BUTLER_PROVIDER_URLS: `stripe=${stripe.url}`, STRIPE_API_KEY: STRIPE_KEY },
    });
    bot1 = await s.agentToken("support-bot-1", "project-support");
    bot2 = await s.agentToken("support-bot-2", "project-support");
    jordan = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
  });
  afterAll(async () => {
    for (const c of clients) await c.close();
    await s?.cleanup();
    await stripe?.close();
  });

  async function connect(token: string | undefined): Promise<Client> {
    const client = new Client({ name: "butler-test", version: "1.0.0" });
    await client.connect(mcpTransport(s.url, token));
    clients.push(client);
    return client;
  }

  const call = (c: Client, name: string, args: Record<string, unknown>, meta?: Record<string, unknown>) =>
    c.callTool({ name, arguments: args, ...(meta ? { _meta: meta } : {}) }) as Promise<CallToolResult>;

  /** The agent's audit lines of one event id. */
  async function line(eventId: string) {
    const lines = await s.events();
    return lines.find((l) => l.event_id === eventId);
  }

  test("tools/list: the project's provider operations, with annotations and what the agent may do now", async () => {
    const c = await connect(bot1);
    const { tools } = await c.listTools();
    const byName = new Map(tools.map((t) => [t.name, t]));
    const list = byName.get("stripe_list_charges")!;
    expect(list.annotations).toMatchObject({
      readOnlyHint: true,
      destructiveHint: false,
      idempotentHint: true,
    });
    expect(list._meta).toMatchObject({ "butler/access": "allowed" });
    const refund = byName.get("stripe_create_refund")!;
    expect(refund.annotations).toMatchObject({ readOnlyHint: false, destructiveHint: true });
    expect(refund._meta).toMatchObject({ "butler/access": "ask" });
    expect(refund.description).toContain("butler_request_access");
    expect(refund.inputSchema.properties).toMatchObject({
      charge: { type: "string", description: "The charge to refund (or payment_intent)." },
      amount: { type: "integer" },
    });
    // A path parameter is a required string.
    expect(byName.get("stripe_retrieve_charge")!.inputSchema).toMatchObject({
      required: ["charge"],
      properties: { charge: { type: "string" } },
    });
    expect(byName.has("butler_request_access")).toBe(true);
    // A provider the project does not enable is offered to ask for, like any denied call.
    expect(byName.get("revolut_list_transactions")?._meta).toMatchObject({ "butler/access": "ask" });
    expect(byName.get("revolut_create_payment")?._meta).toMatchObject({ "butler/access": "each_call" });
    // never_grant: shown as such.
    expect(byName.get("stripe_create_card")?._meta).toMatchObject({ "butler/access": "never" });
    // The grant of support-bot-2 shows for it, not for support-bot-1.
    expect(byName.get("stripe_create_payment_intent")!._meta).toMatchObject({ "butler/access": "ask" });
    const other = new Map((await (await connect(bot2)).listTools()).tools.map((t) => [t.name, t]));
    expect(other.get("stripe_create_payment_intent")!._meta).toMatchObject({ "butler/access": "granted" });
  });

  test("an allowed read goes through the pipeline: the provider's answer, and its decision audited via mcp", async () => {
    const c = await connect(bot1);
    const before = stripe.requests.length;
    const r = await call(c, "stripe_list_charges", { limit: 2 });
    expect(r.isError).toBeFalsy();
    expect(r.structuredContent).toMatchObject({ object: "list" });
    expect(stripe.requests.length).toBe(before + 1);
    // The agent's Butler token never reaches the provider; Butler's key does.
    expect(stripe.requests.at(-1)!.headers.authorization).toBe(`Bearer ${STRIPE_KEY}`);
    const eventId = (r._meta as Record<string, unknown>)["butler/event_id"] as string;
    expect(await line(eventId)).toMatchObject({
      type: "gateway.allowed",
      agent: "support-bot-1",
      operation: "list_charges",
      via: "mcp",
    });
    // Both lines of the call say how it came.
    const outcome = (await s.events()).find((l) => l.decision_event_id === eventId);
    expect(outcome).toMatchObject({ type: "provider.called", via: "mcp" });
  });

  test("a denied call, a request filed through the tool, approval over the API, and the retry goes through", async () => {
    const c = await connect(bot1);
    const before = stripe.requests.length;
    const denied = await call(c, "stripe_create_refund", { charge: "ch_1", amount: 700 });
    expect(denied.isError).toBe(true);
    const text = (denied.content as { type: string; text: string }[]).map((x) => x.text).join("\n");
    expect(text).toContain("Denied by Butler");
    expect(text).toContain("butler_request_access");
    const denial = denied.structuredContent as { event_id: string; decision: string };
    expect(denial.decision).toBe("DENY");
    expect(stripe.requests.length).toBe(before);
    expect(await line(denial.event_id)).toMatchObject({ type: "gateway.denied", via: "mcp" });

    const asked = await call(c, "butler_request_access", {
      denial_event_id: denial.event_id,
      reason: "customer 4411 was charged twice",
    });
    expect(asked.isError, JSON.stringify(asked.content)).toBeFalsy();
    const filed = asked.structuredContent as {
      status: string;
      access_request: { id: string; action: string };
    };
    expect(filed).toMatchObject({ status: "pending", access_request: { action: "stripe:refunds:create" } });

    const res = await fetch(`${s.url}/v1/access-requests/${filed.access_request.id}/approve`, {
      method: "POST",
      headers: { authorization: `Bearer ${jordan}`, "content-type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ outcome: "approved" });

    const retried = await call(c, "stripe_create_refund", { charge: "ch_1", amount: 700 });
    expect(retried.isError, JSON.stringify(retried.content)).toBeFalsy();
    expect(stripe.requests.length).toBe(before + 1);
    expect((await c.listTools()).tools.find((t) => t.name === "stripe_create_refund")!._meta).toMatchObject({
      "butler/access": "granted",
    });
  });

  test("constraints are enforced as through the proxy: over the grant's limit is denied, and never sent", async () => {
    const c = await connect(bot2);
    const before = stripe.requests.length;
    const over = await call(c, "stripe_create_payment_intent", { amount: 9000, currency: "eur" });
    expect(over.isError).toBe(true);
    expect(over.structuredContent).toMatchObject({ decision: "DENY", code: "constraint_failed" });
    const within = await call(c, "stripe_create_payment_intent", { amount: 4000, currency: "eur" });
    expect(within.isError).toBeFalsy();
    expect(stripe.requests.length).toBe(before + 1);
  });

  test("bad input: an unknown tool is a protocol error; wrong argument types and bad request-access arguments are tool errors", async () => {
    const c = await connect(bot2);
    await expect(call(c, "stripe_no_such_operation", {})).rejects.toThrow(
      /unknown tool 'stripe_no_such_operation'/,
    );
    await expect(call(c, "nothing", {})).rejects.toThrow(/unknown tool/);
    const before = stripe.requests.length;
    const wrongType = await call(c, "stripe_create_payment_intent", { amount: "lots", currency: "eur" });
    expect(wrongType.isError).toBe(true);
    expect(JSON.stringify(wrongType.content)).toMatch(/amount/);
    expect(stripe.requests.length).toBe(before);
    const badAsk = await call(c, "butler_request_access", { denial_event_id: "nope", reason: "" });
    expect(badAsk.isError).toBe(true);
    expect(JSON.stringify(badAsk.content)).toMatch(/denial_event_id/);
    const badKey = await call(c, "stripe_list_charges", {}, { "butler/idempotency_key": "two words" });
    expect(badKey.isError).toBe(true);
  });

  test("without a valid token: 401 with WWW-Authenticate; a body that is not JSON is a parse error; a stream needs a session", async () => {
    await expect(connect(undefined)).rejects.toThrow();
    await expect(connect("bt_not_a_real_token_000000000000000000000000")).rejects.toThrow();
    const init = {
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "x", version: "1" } },
    };
    const headers = { "content-type": "application/json", accept: "application/json, text/event-stream" };
    const anon = await fetch(`${s.url}/mcp`, { method: "POST", headers, body: JSON.stringify(init) });
    expect(anon.status).toBe(401);
    expect(anon.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect(await anon.json()).toMatchObject({
      jsonrpc: "2.0",
      error: { message: expect.stringMatching(/Bearer/) },
    });
    const auth = { ...headers, authorization: `Bearer ${bot1}` };
    // Oversized arguments: refused before anything is parsed or decided.
    const huge = {
      jsonrpc: "2.0",
      id: 9,
      method: "tools/call",
      params: { name: "stripe_list_charges", arguments: { q: "x".repeat(2_000_000) } },
    };
    const tooBig = await fetch(`${s.url}/mcp`, { method: "POST", headers: auth, body: JSON.stringify(huge) });
    expect(tooBig.status).toBe(413);
    expect(await tooBig.json()).toMatchObject({ jsonrpc: "2.0", error: { code: expect.any(Number) } });
    const notJson = await fetch(`${s.url}/mcp`, { method: "POST", headers: auth, body: "{nope" });
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toMatchObject({ error: { code: -32700 } });
    // A stream belongs to a session: without one, 400 naming the header.
    const get = await fetch(`${s.url}/mcp`, { headers: { ...auth, accept: "text/event-stream" } });
    expect(get.status).toBe(400);
    expect(await get.text()).toContain("Mcp-Session-Id");
    const ok = await fetch(`${s.url}/mcp`, { method: "POST", headers: auth, body: JSON.stringify(init) });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("x-content-type-options")).toBe("nosniff");
    expect(await ok.json()).toMatchObject({ result: { serverInfo: { name: "butler" } } });
  });

  /** `butler mcp stdio` as a child process, driven by the SDK's stdio client. */
  async function stdioClient(token: string | undefined): Promise<Client> {
    const client = new Client({ name: "butler-stdio-test", version: "1.0.0" });
    await client.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: [BIN, "mcp", "stdio", "--url", s.url, "--token-env", "AGENT_TOKEN"],
        env: { PATH: process.env.PATH ?? "", ...(token ? { AGENT_TOKEN: token } : {}) },
        stderr: "pipe",
      }),
    );
    clients.push(client);
    return client;
  }

  test("the stdio bridge: a client that launches a process lists and calls the same tools, as the token's agent", async () => {
    const c = await stdioClient(bot1);
    const { tools } = await c.listTools();
    expect(tools.map((t) => t.name)).toContain("stripe_list_charges");
    const r = await call(c, "stripe_list_charges", {});
    expect(r.isError).toBeFalsy();
    const eventId = (r._meta as Record<string, unknown>)["butler/event_id"] as string;
    expect(await line(eventId)).toMatchObject({ agent: "support-bot-1", via: "mcp" });
    const denied = await call(c, "stripe_create_subscription", { customer: "cus_1" });
    expect(denied.isError).toBe(true);
  });

  test("the stdio bridge with a refused token answers the client with an error instead of leaving it waiting", async () => {
    await expect(stdioClient("bt_not_a_real_token_000000000000000000000000")).rejects.toThrow(
      /Butler did not take the message.*the token is not valid/,
    );
  });
});
