import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ENGINE } from "../helpers/db.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

describe(`HTTP API: authentication, validation and operations endpoints (${ENGINE})`, () => {
  let s: TestServer;
  let token: string;
  beforeAll(async () => {
    s = await startTestServer();
    token = await s.agentToken("billing-reconciler-1", "project-billing");
  });
  afterAll(() => s?.cleanup());

  const ok = { action: "aws:s3:GetObject", resource: "arn:aws:s3:::ledger-internal/x" };

  test.each([
    ["no Authorization header", undefined, "send the agent's token"],
    ["a made-up token", `bt_${"A".repeat(43)}`, "not valid"],
    ["a malformed token", "hello", "not valid"],
  ])("%s is 401 with a Bearer challenge and writes nothing", async (_name, t, message) => {
    const res = await fetch(`${s.url}/v1/authorize`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(t ? { authorization: `Bearer ${t}` } : {}) },
      body: JSON.stringify(ok),
    });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe('Bearer realm="butler"');
    const body = (await res.json()) as { error: unknown };
    expect(body.error).toMatchObject({ code: "UNAUTHENTICATED", message: expect.stringContaining(message) });
  });

  test("the admin token does not work as an agent token, and an agent token does not open the admin API", async () => {
    expect((await s.authorize(s.server.adminToken, ok)).status).toBe(401);
    const res = await fetch(`${s.url}/v1/admin/agents`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(401);
  });

  test("a revoked token stops working at once", async () => {
    const t = await s.agentToken("invoice-generator", "project-billing");
    expect((await s.authorize(t, ok)).body.decision).toBe("ALLOW");
    const revoke = await s.cli(["agents", "revoke", "invoice-generator", "--project", "project-billing"]);
    expect(revoke.code).toBe(0);
    expect((await s.authorize(t, ok)).status).toBe(401);
    const again = await s.cli(["agents", "revoke", "invoice-generator", "--project", "project-billing"]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("has no active tokens");
  });

  test.each([
    ["an empty object", {}, "body.action: is required"],
    ["a number as action", { action: 5 }, "body.action: must be a string"],
    ["an action without a verb", { action: "aws" }, "body.action: must be service:verb"],
    ["an action with spaces", { action: "aws:s3 Get" }, "body.action: must be service:verb"],
    ["params that are a list", { ...ok, params: [1] }, "body.params: must be a JSON object"],
    ["a claimed identity", { ...ok, agent: "someone-else" }, "body: unknown field 'agent'"],
    ["a NUL character", { ...ok, resource: "a\u0000b" }, "body.resource: must not contain NUL"],
    ["a lone surrogate", { ...ok, resource: "a\ud800b" }, "body.resource: must be valid Unicode"],
    [
      "a huge resource",
      { ...ok, resource: "x".repeat(3000) },
      "body.resource: must be at most 2048 characters",
    ],
    [
      "deeply nested params",
      { ...ok, params: JSON.parse(`${'{"a":'.repeat(30)}1${"}".repeat(30)}`) },
      "nested more than 16 levels",
    ],
    [
      "a number JSON cannot represent",
      `{"action":"tools:Bash","params":{"x":1e400}}`,
      "body.params: must not hold numbers too large",
    ],
    [
      "too many parameter values",
      { ...ok, params: { a: Array.from({ length: 10_001 }, () => 0) } },
      "must not hold more than 10000 values",
    ],
    // Lengths are counted in characters (code points), by the compiled first check as by zod.
    [
      "a resource of 2,049 emoji",
      { ...ok, resource: "\u{1F600}".repeat(2049) },
      "body.resource: must be at most 2048 characters",
    ],
    ["a NUL character in the branch", { ...ok, branch: "main\u0000" }, "body.branch: must not contain NUL"],
    ["a lone surrogate in the action", { action: "aws:s3:\udc00" }, "body.action: must be valid Unicode"],
    ["a JSON array body", [ok], "body: "],
    ["a JSON string body", '"x"', "body: "],
  ])("%s is a 400 naming the problem", async (_name, body, message) => {
    const r = await s.authorize(token, body);
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ code: "INVALID_INPUT", message: expect.stringContaining(message) });
  });

  test("malformed JSON, wrong content types and oversized bodies are 4xx, never 500", async () => {
    expect((await s.authorize(token, "{not json")).status).toBe(400);
    expect((await s.authorize(token, "")).status).toBe(400);
    const xml = await s.authorize(token, "<a/>", { "content-type": "application/xml" });
    expect(xml.status).toBe(415);
    expect(xml.body.error.code).toBe("UNSUPPORTED_MEDIA_TYPE");
    const big = await s.authorize(token, { ...ok, params: { blob: "x".repeat(70_000) } });
    expect(big.status).toBe(413);
    const text = await s.authorize(token, "action=x", { "content-type": "text/plain" });
    expect(text.status).toBe(400);
  });

  test("every answer, a decision or an error, is marked no-store and nosniff", async () => {
    const answers = [
      await fetch(`${s.url}/v1/authorize`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify(ok),
      }),
      await fetch(`${s.url}/v1/authorize`, { method: "POST", body: "{}" }),
      await fetch(`${s.url}/v1/nope`),
    ];
    expect(answers.map((r) => r.status)).toEqual([200, 401, 404]);
    for (const r of answers) {
      expect(r.headers.get("x-content-type-options")).toBe("nosniff");
      expect(r.headers.get("cache-control")).toBe("no-store");
    }
  });

  test("unknown routes are a JSON 404", async () => {
    const res = await fetch(`${s.url}/v1/nope`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: unknown }).error).toMatchObject({
      code: "NOT_FOUND",
      message: "no route GET /v1/nope",
    });
  });

  test("health, readiness and metrics", async () => {
    expect(await (await fetch(`${s.url}/healthz`)).json()).toEqual({
      status: "ok",
      instance: expect.stringMatching(/^srv_/),
      components: { database: "up" },
      audit: { durability: "sync" },
    });
    expect(await (await fetch(`${s.url}/readyz`)).json()).toEqual({ status: "ready" });
    await s.authorize(token, ok);
    await s.authorize(token, { action: "stripe:charges:read", resource: "stripe.com/v1/charges" });
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    const allowed = Number(/butler_decisions_total\{decision="ALLOW"\} (\d+)/.exec(metrics)?.[1]);
    const denied = Number(/butler_decisions_total\{decision="DENY"\} (\d+)/.exec(metrics)?.[1]);
    expect(allowed).toBeGreaterThanOrEqual(1);
    expect(denied).toBeGreaterThanOrEqual(1);
    expect(metrics).toMatch(/butler_decision_duration_seconds_count \d+/);
    expect(metrics).toMatch(/butler_audit_queue_depth 0/);
  });

  test("bad input to the admin API is a 400 too", async () => {
    const res = await fetch(`${s.url}/v1/admin/agents`, {
      method: "POST",
      headers: { authorization: `Bearer ${s.server.adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({ agent: "bad name!", project: "p" }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toContain(
      "body.agent: must be an agent name",
    );
    const spaced = await fetch(`${s.url}/v1/admin/audit/export?since=%202026-01-01T00:00:00Z`, {
      headers: { authorization: `Bearer ${s.server.adminToken}` },
    });
    expect(spaced.status).toBe(200);
    const yearZero = await fetch(`${s.url}/v1/admin/audit/export?since=0000-01-01T00:00:00Z`, {
      headers: { authorization: `Bearer ${s.server.adminToken}` },
    });
    expect(yearZero.status).toBe(400);
    const exp = await fetch(`${s.url}/v1/admin/audit/export?since=yesterday`, {
      headers: { authorization: `Bearer ${s.server.adminToken}` },
    });
    expect(exp.status).toBe(400);
  });
});
