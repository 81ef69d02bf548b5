import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type AdminDeps, type AdminOps, createAdmin } from "../../src/admin/admin-service.js";
import { ADMIN_PREFIX, ADMIN_ROUTES, wirePath } from "../../src/admin/route-table.js";
import { registerAdminRoutes } from "../../src/admin/routes.js";
import { httpAdmin } from "../../src/cli/http-admin.js";
import { createFastify } from "../../src/http/fastify.js";
import { createLogger } from "../../src/logger.js";

const TOKEN = "admin-token-for-the-route-table-test";
const REQ = "req_0123456789abcdef";

/** One call per admin operation: the arguments the CLI passes, and what the operation returns. */
const CALLS: { [K in keyof AdminOps]: { args: Parameters<AdminOps[K]>; result: unknown } } = {
  createAgentToken: {
    args: ["billing-bot", "billing"],
    result: {
      token: "t",
      tokenId: "tok_1",
      createdAt: "2026-05-01T00:00:00Z",
      revokedAt: null,
      warnings: [],
    },
  },
  listAgentTokens: { args: ["billing"], result: [{ tokenId: "tok_1", revokedAt: null }] },
  revokeAgentTokens: {
    args: [{ agent: "billing-bot", project: "billing", tokenId: "tok_0123456789abcdef" }],
    result: ["tok_0123456789abcdef"],
  },
  showPolicy: {
    args: ["billing", new Date("2026-05-01T10:00:00.000Z")],
    result: { project: "billing", revision: 3, contentHash: "ab", at: "2026-05-01T10:00:00.000Z" },
  },
  checkPolicy: {
    args: [
      "billing",
      { agent: "billing-bot", action: "git:push", resource: "acme/api", branch: "main", params: { n: 1 } },
      new Date("2026-05-01T10:00:00.000Z"),
    ],
    result: { decision: "ALLOW", revision_at: 2, at: "2026-05-01T10:00:00.000Z" },
  },
  policyHistory: { args: ["billing"], result: [{ revision: 1, createdAt: "x" }, { revision: 2 }] },
  policyRevision: { args: ["billing", 2], result: { revision: 2, yaml: "x: 1\n", effectiveHash: "cd" } },
  simulatePolicy: {
    args: ["billing", { yaml: "project: billing\n", file: "policies/billing.yaml", since: "P7D" }],
    result: { project: "billing", allowed_calls: 2, allowed: [{ event_id: "evt_1" }] },
  },
  reloadPolicies: { args: [], result: { loaded: [], unchanged: [], retired: [], failed: [] } },
  verifyAudit: { args: [], result: { ok: true, count: 4, verifiedThrough: 4 } },
  exportAudit: {
    args: [{ agent: "billing-bot", project: "billing", since: new Date("2026-05-01T00:00:00.000Z") }],
    result: [{ seq: 1 }, { seq: 2 }],
  },
  migrate: { args: [], result: undefined },
  createApproverToken: {
    args: ["jordan"],
    result: { token: "t", token_id: "a", approver: "jordan", projects: [], warnings: [] },
  },
  listRequests: { args: [{ status: "pending", project: "billing" }], result: [{ id: REQ }] },
  showRequest: { args: [REQ], result: { id: REQ } },
  reviewRequest: {
    args: [REQ, "jordan", "approve", { ttl: "1h", reason: "ok" }],
    result: { outcome: "approved" },
  },
  listGrants: { args: [{ project: "billing", all: true }], result: [{ id: REQ }] },
  breakGlass: {
    args: [
      "jordan",
      {
        project: "billing",
        agent: "billing-bot",
        action: "git:push",
        resource: "acme/api",
        branch: "main",
        ttl: "PT15M",
        reason: "outage",
      },
    ],
    result: { request_id: REQ, grant_id: REQ, revision: 5, expires_at: "x", alert_id: null },
  },
  rememberRequest: {
    args: [REQ, "jordan"],
    result: { status: "remembered", request_id: REQ, written: "file", path: "/p/billing.yaml" },
  },
  createTelegramLink: { args: ["jordan"], result: { url: "https://t.me/b?start=c" } },
  createAuditorToken: { args: ["audrey"], result: { token: "t", token_id: "a", auditor: "audrey" } },
  createDashboardLink: { args: ["jordan"], result: { url: "http://x/dashboard/sign-in?code=c" } },
  setTelegramWebhook: { args: [], result: { url: "http://x/telegram/webhook" } },
  revokeGrant: { args: [REQ, "no longer needed"], result: { grant_id: REQ, revision: 4 } },
  setCredential: { args: ["STRIPE_API_KEY", "sk_test_1"], result: { name: "STRIPE_API_KEY", created: true } },
  listCredentials: { args: [], result: [{ name: "STRIPE_API_KEY" }] },
  deleteCredential: { args: ["STRIPE_API_KEY"], result: { name: "STRIPE_API_KEY" } },
  setPact: {
    args: ["billing-reconciler-1", "project-billing", { purpose: "reconcile" }],
    result: { agent: "billing-reconciler-1", project: "project-billing", revision: 1 },
  },
  agentHealth: {
    args: ["billing-reconciler-1", "project-billing"],
    result: { agent: "billing-reconciler-1", project: "project-billing", health: 90, violations_30d: 1 },
  },
  listMcpTools: { args: ["files"], result: [{ server: "files", tool: "read_file" }] },
  approveMcpTool: {
    args: ["files", "read_file", "a".repeat(64)],
    result: { server: "files", tool: "read_file", pinned_hash: "a".repeat(64) },
  },
};

test("the route table has exactly one route per admin operation, and no two share a method and path", () => {
  // The operations as the service hands them out (constructing it calls none of its dependencies).
  const ops = Object.keys(createAdmin({} as AdminDeps)).sort();
  expect(ADMIN_ROUTES.map((r) => r.op).sort()).toEqual(ops);
  expect(Object.keys(CALLS).sort()).toEqual(ops);
  const keys = ADMIN_ROUTES.map((r) => `${r.method} ${r.path}`);
  expect(new Set(keys).size).toBe(keys.length);
});

test("wirePath fills in path parameters encoded, and leaves out absent query values", () => {
  const route = { path: "/policies/:project/revisions/:revision" };
  expect(wirePath(route, { params: { project: "a/b c", revision: "2" } })).toBe(
    "/policies/a%2Fb%20c/revisions/2",
  );
  expect(wirePath({ path: "/grants" }, { query: { project: "p q", all: undefined } })).toBe(
    "/grants?project=p+q",
  );
  expect(wirePath({ path: "/grants" }, { query: { all: undefined } })).toBe("/grants");
  expect(() => wirePath(route, { params: { project: "x" } })).toThrow(/no value for :revision/);
});

describe("the CLI's HTTP client and the server's routes, built from the same table", () => {
  const received: { op: string; args: unknown[] }[] = [];
  const fake = Object.fromEntries(
    Object.entries(CALLS).map(([op, c]) => [
      op,
      op === "exportAudit"
        ? (...args: unknown[]) => {
            received.push({ op, args });
            return (async function* () {
              yield* c.result as unknown[];
            })();
          }
        : async (...args: unknown[]) => {
            received.push({ op, args });
            return c.result;
          },
    ]),
  ) as unknown as AdminOps;
  const app = createFastify({ log: createLogger("silent"), bodyLimitBytes: 1 << 20 });
  let client: AdminOps;

  beforeAll(async () => {
    await registerAdminRoutes(app, { admin: fake, adminToken: TOKEN });
    const url = await app.listen({ host: "127.0.0.1", port: 0 });
    client = httpAdmin(url, TOKEN);
  });
  afterAll(() => app.close());

  test.each(Object.keys(CALLS) as (keyof AdminOps)[])(
    "%s reaches the server with its arguments and returns its result",
    async (op) => {
      const { args, result } = CALLS[op];
      received.length = 0;
      const call = client[op] as (...a: unknown[]) => unknown;
      let got: unknown = call(...args);
      if (op === "exportAudit") {
        const lines: unknown[] = [];
        for await (const l of got as AsyncIterable<unknown>) lines.push(l);
        got = lines;
      } else got = await got;
      expect(got).toEqual(result);
      expect(received).toEqual([{ op, args }]);
    },
  );

  const auth = { authorization: `Bearer ${TOKEN}` };

  test("every JSON answer names its fields in snake_case (the client reads them back as the operations return them)", async () => {
    const camel: string[] = [];
    const walk = (v: unknown, at: string) => {
      if (Array.isArray(v)) for (const [i, x] of v.entries()) walk(x, `${at}[${i}]`);
      else if (v !== null && typeof v === "object")
        for (const [k, x] of Object.entries(v)) {
          if (/[A-Z]/.test(k)) camel.push(`${at}.${k}`);
          walk(x, `${at}.${k}`);
        }
    };
    for (const route of ADMIN_ROUTES.filter((r) => !r.ndjson)) {
      const req = route.request(...(CALLS[route.op].args as unknown[]));
      const res = await app.inject({
        method: route.method,
        url: `${ADMIN_PREFIX}${wirePath(route, req)}`,
        headers: auth,
        ...(req.body === undefined ? {} : { payload: req.body as object }),
      });
      expect(res.statusCode, `${route.op}: ${res.body}`).toBeLessThan(300);
      walk(res.json(), route.op);
    }
    expect(camel).toEqual([]);
    const tokens = await app.inject({ method: "GET", url: "/v1/admin/agents", headers: auth });
    expect(tokens.json()).toEqual({ tokens: [{ token_id: "tok_1", revoked_at: null }] });
  });

  test("a wrong token, a bad input and an unknown admin path are refused with the same words as before", async () => {
    const wrong = await app.inject({
      method: "GET",
      url: "/v1/admin/audit/verify",
      headers: { authorization: "Bearer nope" },
    });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json().error.message).toBe("the admin token is not valid");
    const noBody = await app.inject({ method: "POST", url: "/v1/admin/agents", headers: auth });
    expect(noBody.statusCode).toBe(400);
    expect(noBody.json().error.message).toBe(
      "the request needs a JSON body (Content-Type: application/json)",
    );
    const revision = await app.inject({
      method: "GET",
      url: "/v1/admin/policies/billing/revisions/x",
      headers: auth,
    });
    expect(revision.json().error.message).toBe("params.revision: must be a revision number");
    const verdict = await app.inject({
      method: "POST",
      url: `/v1/admin/access-requests/${REQ}/maybe`,
      headers: auth,
      payload: { approver: "jordan" },
    });
    expect(verdict.json().error.message).toBe("params.verdict: must be approve or deny");
    const unknown = await app.inject({ method: "GET", url: "/v1/admin/nope?x=1", headers: auth });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().error.message).toBe("no admin route GET /v1/admin/nope");
  });

  test("revoking a grant needs no body; a replaced credential is 200, a new one 201; HEAD of the export sends no lines", async () => {
    const revoke = await app.inject({ method: "POST", url: `/v1/admin/grants/${REQ}/revoke`, headers: auth });
    expect(revoke.statusCode).toBe(200);
    const created = await app.inject({
      method: "POST",
      url: "/v1/admin/credentials",
      headers: auth,
      payload: { name: "K", value: "v" },
    });
    expect(created.statusCode).toBe(201);
    CALLS.setCredential.result = { name: "K", created: false };
    const replaced = await app.inject({
      method: "POST",
      url: "/v1/admin/credentials",
      headers: auth,
      payload: { name: "K", value: "v" },
    });
    expect(replaced.statusCode).toBe(200);
    const head = await app.inject({ method: "HEAD", url: "/v1/admin/audit/export", headers: auth });
    expect(head.statusCode).toBe(200);
    expect(head.headers["content-type"]).toBe("application/x-ndjson; charset=utf-8");
    expect(head.body).toBe("");
  });
});

test("the README's admin API table lists every route", () => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  for (const r of ADMIN_ROUTES) expect(readme).toContain(`| \`${r.method} ${ADMIN_PREFIX}${r.path}\``);
});
