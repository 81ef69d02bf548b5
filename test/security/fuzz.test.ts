import { createHmac } from "node:crypto";
import { fileURLToPath } from "node:url";
import { sql } from "drizzle-orm";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startStandInStripe } from "../../examples/stand-in-stripe.js";
import { rowsOf } from "../../src/db/client.js";
import { FakeSlack } from "../fakes/fake-slack.js";
import { FakeTelegram } from "../fakes/fake-telegram.js";
import { ENGINE } from "../helpers/db.js";
import { seedText } from "../helpers/policy.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

/**
 * Every HTTP endpoint, fuzzed (property-based, fast-check): malformed JSON, wrong types, huge and
 * deeply nested bodies, control characters, lone surrogates, wrong content types, bad and good
 * credentials, hostile path segments. For every call: never a 5xx, never a hang over 5 s, never a
 * crash (uncaught exceptions or rejections in this process fail the test), and nothing stored
 * changes when a call is refused (only the audit log, which records refusals, may grow).
 *
 * BUTLER_FUZZ_RUNS sets the runs per endpoint (default 20 in CI); BUTLER_FUZZ_LONG=1 runs 300.
 * A failure prints fast-check's seed and path: rerun with BUTLER_FUZZ_SEED=<seed>.
 */

const RUNS = process.env.BUTLER_FUZZ_LONG ? 300 : Number(process.env.BUTLER_FUZZ_RUNS ?? 20);
const SEED = process.env.BUTLER_FUZZ_SEED ? Number(process.env.BUTLER_FUZZ_SEED) : undefined;
const PROVIDERS_DIR = fileURLToPath(new URL("../../providers", import.meta.url));
const SLACK_SECRET = "slack-signing-secret-for-fuzzing";
const TG_SECRET = "tg-fuzz-secret_1";
const WEBHOOK_SECRET = "whsec_fuzz_secret";
const STRIPE_KEY = "sk_test_fuzz_4242";
const POLICY = seedText().replace("agents:\n", "providers: [stripe]\nagents:\n");

type Auth = "none" | "garbage" | "agent" | "approver" | "auditor" | "admin" | "basic" | "session";

/** Hostile text: control characters, NUL, lone surrogates, bidi overrides, dots, huge. */
const hostileText = fc.oneof(
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.constantFrom(
    "",
    ".",
    "..",
    "%2e%2e",
    ".%2e",
    "%252e%252e",
    "a/../b",
    "\u0000",
    "a\u0000b",
    "\ud800",
    "\udfff x",
    "\u202e\u2066evil",
    "\r\nSet-Cookie: x=1",
    "<script>alert(1)</script>",
    "$\u007bjndi:ldap://x}",
    "req_0000000000000000",
    "null",
    "💥".repeat(50),
  ),
  fc.string({ maxLength: 5 }).map((s) => s.repeat(2000)),
);

/** A value of any JSON type, with hostile strings in it. */
const anyJson: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    hostileText,
    fc.integer(),
    fc.double(),
    fc.constantFrom(null, true, false, 2 ** 53 + 1, -0, 1e308),
    fc.array(tie("value"), { maxLength: 4 }),
    fc.dictionary(
      fc.oneof(hostileText, fc.constantFrom("__proto__", "constructor", "prototype")),
      tie("value"),
      {
        maxKeys: 4,
      },
    ),
  ),
})).value;

/** Encodes a path segment as a client would, or raw (lone surrogates as WTF-8 bytes, bad escapes). */
function segment(s: string, raw: boolean): string {
  if (raw) return s.replace(/[/?#\s]/g, "_").replace(/[\ud800-\udfff]/g, "%ED%A0%80");
  try {
    return encodeURIComponent(s);
  } catch {
    return "%ED%A0%80";
  }
}

interface Endpoint {
  method: string;
  /** With `:name` parameters. */
  path: string;
  /** Fields its body knows, to build near-valid bodies with wrong values. */
  fields?: string[];
  /** How a body is signed or authenticated besides a bearer token. */
  sign?: "slack" | "telegram" | "stripe";
  /** Server-sent events: only the headers are awaited. */
  stream?: boolean;
}

const ENDPOINTS: Endpoint[] = [
  { method: "GET", path: "/healthz" },
  { method: "GET", path: "/readyz" },
  { method: "GET", path: "/metrics" },
  { method: "GET", path: "/openapi.json" },
  { method: "GET", path: "/docs" },
  { method: "POST", path: "/v1/authorize", fields: ["action", "resource", "branch", "params"] },
  {
    method: "POST",
    path: "/v1/access-requests",
    fields: [
      "action",
      "resource",
      "branch",
      "resource_pattern",
      "ttl",
      "reason",
      "denial_event_id",
      "params",
    ],
  },
  { method: "GET", path: "/v1/access-requests" },
  { method: "GET", path: "/v1/access-requests/:id" },
  { method: "POST", path: "/v1/access-requests/:id/cancel" },
  { method: "POST", path: "/v1/access-requests/:id/approve", fields: ["ttl"] },
  { method: "POST", path: "/v1/access-requests/:id/remember" },
  {
    method: "POST",
    path: "/v1/break-glass",
    fields: ["project", "agent", "action", "resource", "branch", "ttl", "reason"],
  },
  { method: "POST", path: "/v1/break-glass/:id/review" },
  { method: "POST", path: "/v1/access-requests/:id/deny", fields: ["reason"] },
  { method: "GET", path: "/v1/grants" },
  { method: "DELETE", path: "/v1/grants/:id", fields: ["reason"] },
  { method: "POST", path: "/v1/admin/agents", fields: ["agent", "project"] },
  { method: "GET", path: "/v1/admin/agents" },
  { method: "POST", path: "/v1/admin/agents/revoke", fields: ["agent", "project", "token_id"] },
  { method: "GET", path: "/v1/admin/audit/verify" },
  { method: "GET", path: "/v1/admin/audit/export" },
  { method: "POST", path: "/v1/admin/auditors/tokens", fields: ["auditor"] },
  { method: "POST", path: "/v1/admin/approvers/tokens", fields: ["approver"] },
  { method: "POST", path: "/v1/admin/approvers/telegram-link", fields: ["approver"] },
  { method: "GET", path: "/v1/admin/access-requests" },
  { method: "GET", path: "/v1/admin/access-requests/:id" },
  { method: "POST", path: "/v1/admin/access-requests/:id/:verdict", fields: ["approver", "ttl", "reason"] },
  { method: "POST", path: "/v1/admin/access-requests/:id/remember", fields: ["approver"] },
  {
    method: "POST",
    path: "/v1/admin/break-glass",
    fields: ["person", "project", "agent", "action", "resource", "branch", "ttl", "reason"],
  },
  { method: "POST", path: "/v1/admin/policies/reload" },
  { method: "GET", path: "/v1/admin/policies/:project" },
  { method: "GET", path: "/v1/admin/policies/:project/revisions" },
  { method: "POST", path: "/v1/admin/policies/:project/simulate", fields: ["yaml", "file", "since"] },
  {
    method: "POST",
    path: "/v1/admin/policies/:project/check",
    fields: ["agent", "action", "resource", "branch", "params", "at"],
  },
  { method: "GET", path: "/v1/admin/policies/:project/revisions/:revision" },
  { method: "POST", path: "/v1/admin/db/migrate" },
  { method: "POST", path: "/v1/admin/dashboard/links", fields: ["approver"] },
  { method: "POST", path: "/v1/admin/telegram/webhook" },
  { method: "GET", path: "/v1/admin/grants" },
  { method: "POST", path: "/v1/admin/grants/:id/revoke", fields: ["reason"] },
  { method: "POST", path: "/v1/admin/credentials", fields: ["name", "value"] },
  { method: "GET", path: "/v1/admin/credentials" },
  { method: "POST", path: "/v1/admin/credentials/:name/delete" },
  { method: "GET", path: "/v1/admin/agents/:agent/health" },
  { method: "PUT", path: "/v1/admin/agents/:agent/pact", fields: ["project", "pact"] },
  { method: "GET", path: "/v1/admin/mcp-servers/tools" },
  { method: "POST", path: "/v1/admin/mcp-servers/:server/tools/:tool/approve", fields: ["hash"] },
  {
    method: "POST",
    path: "/v1/providers/:provider/operations/:operation",
    fields: ["params", "idempotency_key", "reason"],
  },
  { method: "GET", path: "/v1/proxy/:provider/v1/charges/:id" },
  { method: "POST", path: "/v1/proxy/:provider/v1/refunds", fields: ["amount", "charge"] },
  { method: "POST", path: "/v1/webhooks/:provider", fields: ["id", "type", "data"], sign: "stripe" },
  { method: "GET", path: "/.well-known/agent-card.json" },
  { method: "POST", path: "/a2a", fields: ["jsonrpc", "id", "method", "params"] },
  { method: "POST", path: "/a2a/", fields: ["jsonrpc", "id", "method", "params"] },
  { method: "POST", path: "/mcp", fields: ["jsonrpc", "id", "method", "params"] },
  { method: "GET", path: "/mcp" },
  { method: "DELETE", path: "/mcp" },
  { method: "POST", path: "/slack/events", fields: ["type", "user", "actions", "view"], sign: "slack" },
  {
    method: "POST",
    path: "/telegram/webhook",
    fields: ["update_id", "callback_query", "message"],
    sign: "telegram",
  },
  { method: "GET", path: "/dashboard" },
  { method: "GET", path: "/dashboard/assets/:file" },
  { method: "GET", path: "/dashboard/audit" },
  { method: "GET", path: "/dashboard/audit/export.jsonl" },
  { method: "GET", path: "/dashboard/sign-in" },
  { method: "POST", path: "/dashboard/sign-in", fields: ["token", "next"] },
  { method: "POST", path: "/dashboard/sign-in/link", fields: ["code", "next"] },
  { method: "POST", path: "/dashboard/sign-out", fields: ["_csrf"] },
  { method: "GET", path: "/dashboard/fragments/requests" },
  { method: "GET", path: "/dashboard/requests/:id" },
  { method: "POST", path: "/dashboard/requests/:id/approve", fields: ["_csrf", "ttl"] },
  { method: "POST", path: "/dashboard/requests/:id/remember", fields: ["_csrf"] },
  { method: "POST", path: "/dashboard/policies/:project/simulate", fields: ["_csrf", "yaml", "since"] },
  { method: "POST", path: "/dashboard/requests/:id/deny", fields: ["_csrf", "reason"] },
  { method: "GET", path: "/dashboard/replay" },
  { method: "GET", path: "/dashboard/grants" },
  { method: "GET", path: "/dashboard/agents/:project/:agent" },
  { method: "POST", path: "/dashboard/grants/:id/revoke", fields: ["_csrf", "reason"] },
  { method: "GET", path: "/dashboard/history" },
  { method: "GET", path: "/dashboard/policies" },
  { method: "GET", path: "/dashboard/timeline", stream: false },
  { method: "GET", path: "/dashboard/events", stream: true },
];

const A2A_METHODS = [
  "SendMessage",
  "SendStreamingMessage",
  "GetTask",
  "ListTasks",
  "CancelTask",
  "SubscribeToTask",
  "CreateTaskPushNotificationConfig",
  "GetTaskPushNotificationConfig",
  "ListTaskPushNotificationConfigs",
  "DeleteTaskPushNotificationConfig",
  "GetExtendedAgentCard",
  "message/send",
  "tasks/get",
];

/** Tables whose content a refused call must leave alone (the audit log records refusals). */
const STORED = [
  "policy_revisions",
  "agent_tokens",
  "access_requests",
  "request_reviews",
  "grants",
  "single_use_grants",
  "approver_tokens",
  "dashboard_sessions",
  "mcp_sessions",
  "outbox",
  "posted_cards",
  "chat_bindings",
  "link_codes",
  "a2a_tasks",
  "a2a_push_configs",
  "credentials",
  "spend",
  "webhook_events",
  "mcp_tool_pins",
  "agent_pacts",
  "security_alerts",
  "agent_spend",
  "agent_spend_keys",
];

describe(`fuzzing every HTTP endpoint (${ENGINE})`, () => {
  const slack = new FakeSlack();
  const telegram = new FakeTelegram();
  let stripe: Awaited<ReturnType<typeof startStandInStripe>>;
  let s: TestServer;
  const tokens: Record<string, string> = {};
  let session: { cookie: string; csrf: string };
  let requestId: string;
  const crashes: unknown[] = [];
  const onCrash = (e: unknown) => crashes.push(e);

  beforeAll(async () => {
    process.on("uncaughtException", onCrash);
    process.on("unhandledRejection", onCrash);
    await slack.start();
    await telegram.start();
    stripe = await startStandInStripe(STRIPE_KEY);
    s = await startTestServer({
      policies: { "project-billing.yaml": POLICY },
      env: {
        PROVIDERS_DIR,
        BUTLER_PROVIDER_URLS: `stripe=${stripe.url}`,
        STRIPE_API_KEY: STRIPE_KEY,
        STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
        SLACK_BOT_TOKEN: slack.botToken,
        SLACK_SIGNING_SECRET: SLACK_SECRET,
        SLACK_API_URL: slack.url,
        TELEGRAM_BOT_TOKEN: telegram.token,
        TELEGRAM_WEBHOOK_SECRET: TG_SECRET,
        TELEGRAM_API_ROOT: telegram.url,
      },
    });
    tokens.agent = await s.agentToken("billing-reconciler-1", "project-billing");
    tokens.approver = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
    tokens.auditor = JSON.parse((await s.cli(["auditors", "token", "sam", "--json"])).stdout).token;
    tokens.admin = s.server.adminToken;
    const filed = await s.http("POST", "/v1/access-requests", tokens.agent, {
      action: "stripe:charges:read",
      resource: "stripe.com/v1/charges/ch_fuzz",
      reason: "fuzz fixture",
    });
    requestId = filed.body.access_request.id;
    // Deliveries run only when the test says so (before each snapshot), so that the snapshot taken
    // around a refused call sees that call's effects and nothing the server does in the background.
    await s.server.services.outbox.stop();
    const cookie = await s.dashboardCookie(tokens.approver!);
    const page = await (await fetch(`${s.url}/dashboard`, { headers: { cookie } })).text();
    session = { cookie, csrf: /name="_csrf" value="([^"]+)"/.exec(page)?.[1] ?? "" };
    expect(session.csrf).not.toBe("");
  });

  afterAll(async () => {
    process.off("uncaughtException", onCrash);
    process.off("unhandledRejection", onCrash);
    await s?.cleanup();
    await slack.stop();
    await telegram.stop();
    await stripe?.close();
  });

  test("the fuzzed list covers every route the server has", () => {
    const listed = new Set(ENDPOINTS.map((e) => `${e.method} ${e.path}`));
    const routes = serverRoutes(s.server.app.printRoutes({ commonPrefix: false }));
    expect(routes.length).toBeGreaterThan(50);
    expect(routes).toContain("POST /v1/access-requests/:id/approve");
    const missing = routes.filter((r) => !listed.has(r) && !r.endsWith(" *"));
    expect(missing).toEqual([]);
  });

  // One statement for every table: a fingerprint of the rows of each.
  const SNAPSHOT = sql.raw(
    STORED.map(
      (t) =>
        `SELECT '${t}' AS t, count(*)::int AS n, md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) AS h FROM ${t} x`,
    ).join(" UNION ALL "),
  );
  async function snapshot(): Promise<string> {
    const rows = rowsOf<{ t: string; n: number; h: string }>(
      await s.server.services.database.db.execute(SNAPSHOT),
    );
    return rows.map((r) => `${r.t}:${r.n}:${r.h}`).join("\n");
  }

  function headersFor(auth: Auth): Record<string, string> {
    switch (auth) {
      case "none":
        return {};
      case "garbage":
        return { authorization: "Bearer ghp_not-a-butler-token-\u00e9" };
      case "basic":
        return { authorization: `Basic ${Buffer.from("admin:admin").toString("base64")}` };
      case "session":
        return { cookie: session.cookie, "x-csrf-token": session.csrf };
      default:
        return { authorization: `Bearer ${tokens[auth]}` };
    }
  }

  const bodyArb = (e: Endpoint) =>
    fc.oneof(
      { arbitrary: fc.constant(undefined), weight: 1 },
      { arbitrary: anyJson.map((v) => JSON.stringify(v) ?? "null"), weight: 3 },
      {
        arbitrary: fc
          .record(
            Object.fromEntries(
              (e.fields ?? ["x"]).map((f) => [
                f,
                f === "method" ? fc.oneof(fc.constantFrom(...A2A_METHODS), anyJson) : anyJson,
              ]),
            ),
            { requiredKeys: [] },
          )
          .map((o) => JSON.stringify(o)),
        weight: 4,
      },
      { arbitrary: fc.string({ unit: "binary", maxLength: 200 }), weight: 2 },
      {
        arbitrary: fc.integer({ min: 1000, max: 60_000 }).map((n) => `${"[".repeat(n)}${"]".repeat(n)}`),
        weight: 1,
      },
      {
        arbitrary: fc.constantFrom('{"a":"\\ud800"}', '{"reason":"\\u0000"}', '{"x":1,"x":2}', "{", "null"),
        weight: 1,
      },
      { arbitrary: fc.constant("x".repeat(2 * 1024 * 1024)), weight: 1 },
    );

  const contentType = fc.constantFrom(
    "application/json",
    "application/json",
    "application/json; charset=utf-16",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=zz",
    "application/xml",
    undefined,
  );

  const authArb = fc.constantFrom<Auth>(
    "none",
    "garbage",
    "agent",
    "approver",
    "auditor",
    "admin",
    "basic",
    "session",
  );

  function paramValue(name: string): fc.Arbitrary<string> {
    const known: Record<string, string[]> = {
      id: [requestId, "req_0000000000000000"],
      project: ["project-billing"],
      provider: ["stripe", "stripe%2f..%2fwise", "wise"],
      operation: ["list_charges", "retrieve_charge", "create_refund"],
      verdict: ["approve", "deny"],
      file: ["dashboard.css", "dashboard.js"],
      revision: ["1", "0", "99999999999"],
      name: ["STRIPE_API_KEY"],
    };
    return fc.oneof(
      fc.constantFrom(...(known[name] ?? ["x"])),
      fc.tuple(hostileText, fc.boolean()).map(([t, raw]) => segment(t, raw)),
    );
  }

  function signedHeaders(e: Endpoint, body: string): Record<string, string> {
    const now = Math.floor(Date.now() / 1000);
    if (e.sign === "slack")
      return {
        "x-slack-request-timestamp": String(now),
        "x-slack-signature": `v0=${createHmac("sha256", SLACK_SECRET).update(`v0:${now}:${body}`).digest("hex")}`,
      };
    if (e.sign === "telegram") return { "x-telegram-bot-api-secret-token": TG_SECRET };
    if (e.sign === "stripe")
      return {
        "stripe-signature": `t=${now},v1=${createHmac("sha256", WEBHOOK_SECRET).update(`${now}.${body}`).digest("hex")}`,
      };
    return {};
  }

  for (const e of ENDPOINTS) {
    test(`${e.method} ${e.path}: never a 5xx, a hang or a crash; a refusal changes nothing stored`, async () => {
      const names = [...e.path.matchAll(/:([a-z]+)/g)].map((m) => m[1]!);
      await fc.assert(
        fc.asyncProperty(
          fc.tuple(...names.map(paramValue)),
          bodyArb(e),
          contentType,
          authArb,
          fc.boolean(),
          fc.dictionary(
            fc.constantFrom("status", "limit", "project", "agent", "since", "q", "from"),
            hostileText,
            {
              maxKeys: 3,
            },
          ),
          fc.boolean(),
          async (values, rawBody, type, auth, sign, query, head) => {
            let path = e.path;
            names.forEach((n, i) => {
              path = path.replace(`:${n}`, values[i]!);
            });
            const qs = new URLSearchParams();
            for (const [k, v] of Object.entries(query)) qs.set(k, String(v).replace(/[\ud800-\udfff]/g, "?"));
            const url = `${s.url}${path}${qs.size ? `?${qs}` : ""}`;
            let body = e.method === "GET" ? undefined : rawBody;
            if (body !== undefined && type === "application/x-www-form-urlencoded" && e.sign === "slack")
              body = `payload=${encodeURIComponent(body.replace(/[\ud800-\udfff]/g, "?"))}`;
            const headers: Record<string, string> = {
              ...headersFor(auth),
              ...(type && body !== undefined ? { "content-type": type } : {}),
              ...(sign && body !== undefined ? signedHeaders(e, body) : {}),
            };
            await s.server.services.outbox.drain();
            const before = await snapshot();
            const method = e.method === "GET" && head ? "HEAD" : e.method;
            const res = await fetch(url, {
              method,
              headers,
              body,
              redirect: "manual",
              signal: AbortSignal.timeout(5_000),
            }).catch((err: Error) => {
              throw new Error(`${e.method} ${url}: no answer (${err.name}: ${err.message})`);
            });
            const text = e.stream ? "" : await res.text();
            if (e.stream) await res.body?.cancel();
            expect(res.status, `${e.method} ${url} → ${res.status} ${text.slice(0, 300)}`).toBeLessThan(500);
            expect(crashes, "an uncaught exception or rejection in the server").toEqual([]);
            if (method === "HEAD") expect(text, `HEAD ${url} → ${res.status} carried a body`).toBe("");
            // JSON-RPC answers 200 with its own error codes: an internal error is a 5xx in disguise.
            if (e.path.startsWith("/a2a") || e.path === "/mcp")
              expect(text, `${e.method} ${url} → internal error ${text.slice(0, 300)}`).not.toContain(
                '"code":-32603',
              );
            // A refusal changes nothing stored (a superseded or expired request is the decision
            // it reports, and a 404 on an unknown id has nothing to change).
            const rpcError =
              (e.path.startsWith("/a2a") || e.path === "/mcp") &&
              /^\{"jsonrpc":"2\.0".*"error":\{/.test(text);
            const refused = res.status >= 400 || rpcError;
            // Refusals that are decisions themselves (the request expired or was superseded) change
            // what they report; any other refusal changes nothing stored.
            const decidedByRefusal = res.status === 409 && /"code":"(EXPIRED|SUPERSEDED)"/.test(text);
            if (refused && !decidedByRefusal) {
              expect(await snapshot(), `${e.method} ${url} → ${res.status} changed stored state`).toBe(
                before,
              );
            }
          },
        ),
        { numRuns: RUNS, seed: SEED, endOnFailure: true },
      );
    });
  }

  test("afterwards the audit chain still verifies and the server still decides", async () => {
    const v = await s.cli(["audit", "verify", "--json"]);
    expect(v.code).toBe(0);
    expect(
      (
        await s.authorize(tokens.agent, {
          action: "aws:s3:GetObject",
          resource: "arn:aws:s3:::ledger-internal/x",
        })
      ).body.decision,
    ).toBe("ALLOW");
  });
});

/** `METHOD /full/path` of every route in fastify's printRoutes tree. */
function serverRoutes(tree: string): string[] {
  const out: string[] = [];
  const stack: string[] = [];
  for (const line of tree.split("\n")) {
    const at = line.indexOf("── ");
    if (at < 0) continue;
    const depth = Math.round((at - 1) / 4);
    const m =
      /^(\S*) \(([^)]*)\)$/.exec(line.slice(at + 3).trim()) ?? /^(\S*)$/.exec(line.slice(at + 3).trim());
    if (!m) continue;
    stack.length = depth;
    stack.push(m[1]!);
    const path = stack.join("");
    for (const method of (m[2] ?? "").split(", ").filter(Boolean)) {
      if (method === "HEAD" || method === "OPTIONS") continue;
      out.push(`${method} ${path}`);
    }
  }
  return out;
}
