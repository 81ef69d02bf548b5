import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import { rowsOf } from "../../src/db/client.js";
import { ENGINE } from "../helpers/db.js";
import { seedText } from "../helpers/policy.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const PROVIDERS_DIR = fileURLToPath(new URL("../../providers", import.meta.url));
const STRIPE_KEY = "sk_test_audit_order_0001";
const AGENT = "support-bot-1";

const SUPPORT = `project: project-support
providers: [stripe]
agents:
  - name: ${AGENT}
grants:
  - service: stripe
    actions: [refunds:create]
    resources: [stripe.com/v1/refunds]
`;

interface Row {
  seq: number;
  event_id: string;
  type: string;
  operation: string | null;
  decision_event_id: string | null;
  /** The transaction that wrote the row: one commit, one xmin. */
  tx: string;
}

/**
 * When each audit line of a proxied call is committed, seen from the provider's side: a stand-in
 * upstream that reads the audit table (through the server's own database, so only committed rows)
 * when a call reaches it, before it answers.
 */
describe(`the audit lines of a provider call, in time (${ENGINE})`, () => {
  let s: TestServer;
  let upstream: Server;
  let token: string;
  let billing: string;
  /** The agent's audit lines as they stood when each call reached the upstream. */
  const seenAtUpstream: Row[][] = [];

  const lines = async (agent = AGENT): Promise<Row[]> =>
    rowsOf<Row>(
      await s.server.services.database.db.execute(sql`
        SELECT seq::int AS seq, event_id, type, details->>'operation' AS operation,
               details->>'decision_event_id' AS decision_event_id, xmin::text AS tx
        FROM audit_events WHERE agent = ${agent} ORDER BY seq`),
    );

  beforeAll(async () => {
    upstream = createServer((req, res) => {
      req.resume();
      req.on("end", async () => {
        seenAtUpstream.push(await lines());
        const body =
          req.method === "GET"
            ? { object: "list", data: [{ id: "ch_1", object: "charge" }] }
            : { id: "re_1", object: "refund" };
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
      });
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    const port = (upstream.address() as AddressInfo).port;
    s = await startTestServer({
      policies: { "project-billing.yaml": seedText(), "project-support.yaml": SUPPORT },
      env: {
        PROVIDERS_DIR,
        BUTLER_PROVIDER_URLS: `stripe=http://127.0.0.1:${port}`,
        STRIPE_API_KEY: STRIPE_KEY,
      },
    });
    token = await s.agentToken(AGENT, "project-support");
    billing = await s.agentToken("billing-reconciler-1", "project-billing");
  });
  afterAll(async () => {
    await s?.cleanup();
    await new Promise<void>((r) => (upstream ? upstream.close(() => r()) : r()));
  });

  const proxy = (method: string, path: string, form?: Record<string, string>, as = token) =>
    fetch(`${s.url}/v1/proxy/stripe${path}`, {
      method,
      headers: {
        authorization: `Bearer ${as}`,
        ...(form ? { "content-type": "application/x-www-form-urlencoded" } : {}),
      },
      body: form ? new URLSearchParams(form).toString() : undefined,
    });

  test("a read's decision and outcome lines are committed together, after the provider answered, before the agent hears it", async () => {
    const before = (await lines()).length;
    const res = await proxy("GET", "/v1/charges?limit=1");
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ data: [{ id: "ch_1" }] });
    // When the read reached the provider, nothing of it was in the audit log yet.
    expect(seenAtUpstream.at(-1)!.length).toBe(before);
    const [decision, outcome, ...more] = (await lines()).slice(before);
    expect(more).toEqual([]);
    expect(decision).toMatchObject({ type: "gateway.allowed", operation: "list_charges" });
    expect(outcome).toMatchObject({
      type: "provider.called",
      operation: "list_charges",
      decision_event_id: decision!.event_id,
      seq: decision!.seq + 1,
    });
    // One transaction wrote both: there is no moment at which one is on disk without the other.
    expect(outcome!.tx).toBe(decision!.tx);
    expect(res.headers.get("x-butler-event-id")).toBe(decision!.event_id);
  });

  test("a write's decision line is committed before the provider sees the call; its outcome after", async () => {
    const before = (await lines()).length;
    const res = await proxy("POST", "/v1/refunds", { charge: "ch_1", amount: "700" });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ id: "re_1", object: "refund" });
    const atUpstream = seenAtUpstream.at(-1)!.slice(before);
    expect(atUpstream).toEqual([
      expect.objectContaining({ type: "gateway.allowed", operation: "create_refund" }),
    ]);
    const [decision, outcome, ...more] = (await lines()).slice(before);
    expect(more).toEqual([]);
    expect(decision!.event_id).toBe(atUpstream[0]!.event_id);
    expect(outcome).toMatchObject({
      type: "provider.called",
      operation: "create_refund",
      decision_event_id: decision!.event_id,
    });
    expect(outcome!.tx).not.toBe(decision!.tx);
  });

  test("a denied read is audited (one line) and never reaches the provider", async () => {
    const calls = seenAtUpstream.length;
    const before = (await lines("billing-reconciler-1")).length;
    // The seed's project names no provider and grants no Stripe call: the read is denied.
    const res = await proxy("GET", "/v1/charges?limit=1", undefined, billing);
    expect(res.status).toBe(403);
    const body = (await res.json()) as { event_id: string };
    expect(seenAtUpstream.length).toBe(calls);
    expect((await lines("billing-reconciler-1")).slice(before)).toEqual([
      expect.objectContaining({ type: "gateway.denied", event_id: body.event_id, operation: "list_charges" }),
    ]);
  });
  // Last in this file: it closes the audit log, as a shutdown does.
  test("a read is not sent when its lines could not be written (the audit log closing): a 503, and the provider never sees it", async () => {
    const calls = seenAtUpstream.length;
    const before = (await lines()).length;
    await s.server.services.audit.close();
    const res = await proxy("GET", "/v1/charges?limit=1");
    expect(res.status).toBe(503);
    expect(await res.text()).not.toContain("ch_1");
    expect(seenAtUpstream.length).toBe(calls);
    expect((await lines()).length).toBe(before);
  });
});

/** Which audit batches were written without waiting for the disk flush, and what they held. */
function recordBatches(database: { prepared: (...a: never[]) => unknown }) {
  const spy = vi.spyOn(database as { prepared: (s: { name: string }, v: unknown[]) => unknown }, "prepared");
  return () =>
    spy.mock.calls
      .filter(([statement]) => statement.name.startsWith("butler_audit_batch"))
      .map(([statement, values]) => ({
        flushed: statement.name === "butler_audit_batch",
        types: (JSON.parse(String(values.at(-1))) as { ty: string }[]).map((r) => r.ty),
      }));
}

describe.skipIf(ENGINE !== "postgres")("AUDIT_DURABILITY=async in the call path (postgres)", () => {
  let s: TestServer;
  let upstream: Server;
  let token: string;
  let sentBeforeFlush: boolean[] = [];
  let batches: () => { flushed: boolean; types: string[] }[];

  beforeAll(async () => {
    upstream = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        // What the audit log had written, and how, when the call reached the provider.
        sentBeforeFlush = batches().map((b) => b.flushed);
        const body = req.method === "GET" ? { object: "list", data: [] } : { id: "re_1", object: "refund" };
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
      });
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    const port = (upstream.address() as AddressInfo).port;
    s = await startTestServer({
      policies: { "project-support.yaml": SUPPORT },
      env: {
        PROVIDERS_DIR,
        BUTLER_PROVIDER_URLS: `stripe=http://127.0.0.1:${port}`,
        STRIPE_API_KEY: STRIPE_KEY,
        AUDIT_DURABILITY: "async",
      },
    });
    token = await s.agentToken(AGENT, "project-support");
    batches = recordBatches(s.server.services.database);
  });
  afterAll(async () => {
    vi.restoreAllMocks();
    await s?.cleanup();
    await new Promise<void>((r) => (upstream ? upstream.close(() => r()) : r()));
  });

  const call = (method: string, path: string, form?: Record<string, string>) =>
    fetch(`${s.url}/v1/proxy/stripe${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(form ? { "content-type": "application/x-www-form-urlencoded" } : {}),
      },
      body: form ? new URLSearchParams(form).toString() : undefined,
    });

  test("a write's decision line reaches the disk before the provider sees the call; a read's pair need not", async () => {
    const from = batches().length;
    const write = await call("POST", "/v1/refunds", { charge: "ch_1", amount: "700" });
    expect(write.status).toBe(200);
    // The decision line's batch was written with the flush before the call went out.
    expect(sentBeforeFlush.slice(from)).toEqual([true]);
    expect(batches().slice(from)[0]).toEqual({ flushed: true, types: ["gateway.allowed"] });
    const read = await call("GET", "/v1/charges?limit=1");
    expect(read.status).toBe(200);
    // The mode's choice still holds for the rest: the read's pair (decision and outcome) is
    // committed without waiting for the flush.
    expect(batches().at(-1)).toEqual({ flushed: false, types: ["gateway.allowed", "provider.called"] });
  });
});
