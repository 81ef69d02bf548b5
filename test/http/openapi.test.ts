import { fileURLToPath } from "node:url";
import { Validator } from "@seriousme/openapi-schema-validator";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { SECURITY_HEADERS } from "../../src/dashboard/session-hooks.js";
import { ERROR_CODES } from "../../src/errors.js";
import { createFastify } from "../../src/http/fastify.js";
import { collectRoutes } from "../../src/http/route-doc.js";
import { createLogger } from "../../src/logger.js";
import { FakeSlack } from "../fakes/fake-slack.js";
import { FakeTelegram } from "../fakes/fake-telegram.js";
import { chatEnv } from "../helpers/chat.js";
import { ENGINE } from "../helpers/db.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const PROVIDERS_DIR = fileURLToPath(new URL("../../providers", import.meta.url));
const OPENAPI_METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/**
 * The routes a fastify instance serves, read from its router's own tree (`printRoutes`): each
 * line is a node whose path is its parent's plus its own segment, with the methods it answers.
 */
function servedRoutes(tree: string): { method: string; path: string }[] {
  const out: { method: string; path: string }[] = [];
  const stack: string[] = [];
  for (const line of tree.split("\n")) {
    const m = /^([│ ]*)[├└]── (\S+)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length / 4;
    stack.length = depth;
    const path = (stack[depth - 1] ?? "") + m[2]!;
    stack.push(path);
    for (const method of m[3]?.split(", ") ?? []) out.push({ method, path });
  }
  return out;
}

/** Every part switched on: providers, Slack and Telegram by webhook, the dashboard, A2A. */
describe(`/openapi.json and /docs describe every route the server registers (${ENGINE})`, () => {
  const slack = new FakeSlack();
  const telegram = new FakeTelegram();
  let s: TestServer;
  let doc: any;

  beforeAll(async () => {
    await slack.start();
    await telegram.start();
    s = await startTestServer({
      env: {
        PROVIDERS_DIR,
        BUTLER_PROVIDER_URLS: "stripe=http://127.0.0.1:9",
        STRIPE_API_KEY: "sk_test_unused",
        ...chatEnv(slack, telegram, { slack: "slack-signing-secret", telegram: "telegram-webhook-secret" }),
      },
    });
    const res = await fetch(`${s.url}/openapi.json`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    doc = await res.json();
  });
  afterAll(async () => {
    await s?.cleanup();
    await slack.stop();
    await telegram.stop();
  });

  test("it is a valid OpenAPI 3.1 document", async () => {
    const validator = new Validator();
    const result = await validator.validate(structuredClone(doc));
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe("3.1");
  });

  test("it lists exactly the routes the server's router serves (HEAD only where there is no GET; no QUERY)", () => {
    const served = servedRoutes(s.server.app.printRoutes());
    // Make sure the parse saw the whole server, webhooks and dashboard included.
    expect(served.length).toBeGreaterThan(60);
    const expected = new Set<string>();
    const withGet = new Set(served.filter((r) => r.method === "GET").map((r) => r.path));
    for (const r of served) {
      if (!OPENAPI_METHODS.includes(r.method.toLowerCase())) continue;
      if (r.method === "HEAD" && withGet.has(r.path)) continue;
      const path = r.path.replace(/:(\w+)/g, "{$1}").replace(/\*$/, "{path}");
      expected.add(`${r.method} ${path}`);
    }
    const listed = new Set<string>();
    for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, unknown>>))
      for (const method of Object.keys(item)) listed.add(`${method.toUpperCase()} ${path}`);
    expect([...listed].sort()).toEqual([...expected].sort());
    for (const must of [
      "POST /v1/authorize",
      "DELETE /v1/grants/{id}",
      "POST /v1/admin/access-requests/{id}/{verdict}",
      "PATCH /v1/proxy/{provider}/{path}",
      "POST /slack/events",
      "POST /telegram/webhook",
      "GET /dashboard",
      "GET /openapi.json",
      "GET /docs",
    ])
      expect(listed).toContain(must);
  });

  test("every operation has a summary, its credentials and the error shape; bodies come from the routes' schemas", () => {
    for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, any>>))
      for (const [method, op] of Object.entries(item)) {
        const where = `${method} ${path}`;
        expect(op.summary, where).toMatch(/\w/);
        expect(Array.isArray(op.security), where).toBe(true);
        const errors = op.responses["4XX"] ?? op.responses.default;
        expect(errors, where).toBeDefined();
      }
    const schemes = Object.keys(doc.components.securitySchemes).sort();
    expect(schemes).toEqual(
      [
        "adminToken",
        "agentToken",
        "approverToken",
        "dashboardSession",
        "slackSignature",
        "telegramSecret",
      ].sort(),
    );
    expect(doc.components.schemas.Error.properties.error.properties.code.enum).toEqual([...ERROR_CODES]);
    const authorize = doc.paths["/v1/authorize"].post;
    expect(authorize.security).toEqual([{ agentToken: [] }]);
    expect(authorize.responses["4XX"]).toEqual({ $ref: "#/components/responses/Error" });
    const body = authorize.requestBody.content["application/json"].schema;
    expect(body).toMatchObject({ type: "object", additionalProperties: false, required: ["action"] });
    expect(Object.keys(body.properties).sort()).toEqual(["action", "branch", "params", "resource"]);
    const agents = doc.paths["/v1/admin/agents"].post;
    expect(agents.security).toEqual([{ adminToken: [] }]);
    expect(agents.requestBody.content["application/json"].schema.required.sort()).toEqual([
      "agent",
      "project",
    ]);
    expect(Object.keys(agents.responses)).toContain("201");
    const one = doc.paths["/v1/access-requests/{id}"].get;
    expect(one.security).toEqual([{ agentToken: [] }, { approverToken: [] }]);
    expect(one.parameters[0]).toMatchObject({ name: "id", in: "path", required: true });
    expect(one.parameters[0].schema.pattern).toBe("^req_[a-z0-9]{16}$");
    const list = doc.paths["/v1/access-requests"].get;
    expect(list.parameters.map((p: any) => `${p.in}:${p.name}`).sort()).toEqual([
      "query:project",
      "query:status",
    ]);
    expect(doc.paths["/healthz"].get.security).toEqual([]);
    expect(doc.paths["/dashboard"].get.security).toEqual([{ dashboardSession: [] }]);
    expect(doc.paths["/a2a"].post.responses.default).toBeDefined();
    const operation = doc.paths["/v1/providers/{provider}/operations/{operation}"].post;
    expect(operation.parameters.map((p: any) => p.name)).toContain("X-Butler-Reason");
  });

  test("/docs is the same description as one HTML page, escaped, under the dashboard's Content-Security-Policy", async () => {
    const res = await fetch(`${s.url}/docs`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) expect(res.headers.get(k)).toBe(v);
    const page = await res.text();
    expect(page).not.toMatch(/<script|<style|<link|style=/i);
    for (const path of Object.keys(doc.paths)) expect(page).toContain(`${path}</code>`);
    // Schemas hold `<` in regular expressions and descriptions quote: all of it is escaped.
    expect(page).toContain("&quot;pattern&quot;");
    expect(page).toContain('<a href="/openapi.json">');
  });
});

test("a route registered without a description stops the server from starting, naming it", async () => {
  const app = createFastify({ log: createLogger("silent"), bodyLimitBytes: 1024 });
  collectRoutes(app);
  app.get("/described", { config: { doc: { tag: "t", summary: "s", auth: [] } } }, async () => ({}));
  app.post("/v1/forgotten/:id", async () => ({}));
  await expect(app.ready()).rejects.toThrow(
    "routes without a description (config.doc) for /openapi.json: POST /v1/forgotten/:id",
  );
});
