import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import { type RunningServer, startServer } from "../../src/main.js";
import { FakeSlack } from "../fakes/fake-slack.js";
import { FakeTelegram } from "../fakes/fake-telegram.js";
import { TcpProxy } from "../fakes/tcp-proxy.js";
import { chatEnv, postSlack, postSlackRaw, slackButton, telegramMessage } from "../helpers/chat.js";
import { ENGINE } from "../helpers/db.js";
import { seedText } from "../helpers/policy.js";
import { rawRequest } from "../helpers/raw-http.js";
import { createTestEnv, startTestServer, type TestEnv, type TestServer } from "../helpers/server.js";
import { until } from "../helpers/wait.js";

const SIGNING_SECRET = "slack-signing-secret-for-bad-input";
const TG_SECRET = "tg-webhook-secret_bad_input";
const BILLING = `${seedText().replace(
  "  - id: jordan\n    name: Jordan\n",
  "  - id: jordan\n    name: Jordan\n    slack: { user_id: U0JORDAN }\n    telegram: { user_id: 7001 }\n",
)}require_approval:
  - actions: ["pay:send"]
`;

/**
 * Bad input from outside, written as an attacker (or a confused platform) sends it: whatever
 * arrives, the answer is a clear 4xx (or, where the sender is a chat platform that retries
 * anything else, a 200 that changes nothing), never a 500, a crash or a hang; and no outside text
 * reaches the database in a form PostgreSQL refuses.
 */
describe(`bad input (${ENGINE})`, () => {
  const slack = new FakeSlack();
  const telegram = new FakeTelegram();
  let s: TestServer;
  let agent: string;
  let jordan: string;

  beforeAll(async () => {
    await slack.start();
    await telegram.start();
    slack.users.set("U0JORDAN", { email: "jordan@example.com", name: "jordan" });
    s = await startTestServer({
      policies: { "project-billing.yaml": BILLING },
      env: {
        ...chatEnv(slack, telegram, { slack: SIGNING_SECRET, telegram: TG_SECRET }),
        BUTLER_MASTER_KEY: "ab".repeat(32),
      },
    });
    agent = await s.agentToken("billing-reconciler-1", "project-billing");
    jordan = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
  });
  afterAll(async () => {
    await s?.cleanup();
    await slack.stop();
    await telegram.stop();
  });

  let branch = 0;
  async function file(): Promise<string> {
    const r = await s.http("POST", "/v1/access-requests", agent, {
      action: "git:push",
      resource: "reidataai/billing-ledger",
      branch: `release-${++branch}`,
      ttl: "PT1H",
      reason: "release",
    });
    expect(r.status).toBe(201);
    return r.body.access_request.id as string;
  }
  const request = async (id: string) => (await s.http("GET", `/v1/access-requests/${id}`, agent)).body;

  const events = (type: string) => s.events(type);
  const slackRaw = (body: string, type: string) => postSlackRaw(s.url, body, SIGNING_SECRET, type);
  const slackForm = (payload: unknown) => postSlack(s.url, payload, SIGNING_SECRET);

  const user = { id: "U0JORDAN", username: "jordan", name: "jordan", team_id: "T0FAKE" };
  const press = (actionId: string, value: string | undefined) =>
    slackButton("U0JORDAN", { actionId, value }, { ts: "1.1", channel: "D0JORDAN" });
  function submit(view: Record<string, unknown>) {
    return {
      type: "view_submission",
      team: { id: "T0FAKE", domain: "fake" },
      user,
      api_app_id: "A0FAKE",
      token: "legacy",
      trigger_id: "t",
      view: { id: "V0FAKE", team_id: "T0FAKE", type: "modal", ...view },
    };
  }

  test("signed Slack interactions of an unknown shape or with an unknown value get 200, change nothing, and are audited", async () => {
    const id = await file();
    const ignoredBefore = (await events("slack.request_ignored")).length;
    const ephemeralBefore = slack.calledWith("chat.postEphemeral").length;
    const payloads: [string, unknown][] = [
      ["an unknown button", press("butler_frobnicate", id)],
      ["an approve button with an unknown value", press("butler_approve", "approve-everything")],
      ["a deny button with an unknown value", press("butler_deny", "../../etc")],
      ["an approve button without a value", press("butler_approve", undefined)],
      ["a block action without actions or user", { type: "block_actions" }],
      ["a block action with actions of the wrong type", { ...press("butler_approve", id), actions: "x" }],
      ["a modal of another app", submit({ callback_id: "someone_else", private_metadata: id })],
      ["the deny modal without state", submit({ callback_id: "butler_deny_modal", private_metadata: id })],
      [
        "the deny modal with an unknown request",
        submit({ callback_id: "butler_deny_modal", private_metadata: "req_0000000000000000", state: {} }),
      ],
      ["a shortcut", { type: "shortcut", callback_id: "x", trigger_id: "t", user }],
      ["an unknown type", { type: "frobnicate", user }],
      ["no type at all", { user }],
      ["an empty object", {}],
      ["an array", [1, 2]],
      ["null", null],
      ["a number", 42],
      ["a string", "block_actions"],
    ];
    for (const [what, payload] of payloads) {
      const r = await slackForm(payload);
      expect(r.status, `${what}: ${r.text}`).toBe(200);
    }
    for (const body of [
      "null",
      "[]",
      "7",
      '"x"',
      '{"type":"event_callback","event":{"type":"frobnicate"}}',
    ]) {
      const r = await slackRaw(body, "application/json");
      expect(r.status, `JSON ${body}: ${r.text}`).toBe(200);
    }
    // A form without a payload field (not an interaction at all).
    expect((await slackRaw("foo=bar", "application/x-www-form-urlencoded")).status).toBe(200);
    expect((await request(id)).status).toBe("pending");
    const ignored = (await events("slack.request_ignored")).slice(ignoredBefore);
    expect(ignored.length).toBeGreaterThanOrEqual(payloads.length - 1);
    expect(ignored.map((e) => e.reason)).toContain("unknown action butler_frobnicate");
    // The presser is told privately that nothing happened.
    await slack.next(
      () => slack.calledWith("chat.postEphemeral").length > ephemeralBefore,
      "an ephemeral note",
    );
    expect(slack.calledWith("chat.postEphemeral").at(-1)!.args).toMatchObject({ user: "U0JORDAN" });
  });

  test("a deny reason with NUL and unpaired surrogates from the Slack modal is stored mended and the request is denied", async () => {
    const id = await file();
    const r = await slackForm(
      submit({
        callback_id: "butler_deny_modal",
        private_metadata: id,
        state: {
          values: { reason: { value: { type: "plain_text_input", value: "no\u0000way\ud800 \udfff!" } } },
        },
      }),
    );
    expect(r.status, r.text).toBe(200);
    expect(await request(id)).toMatchObject({
      status: "denied",
      decision: { by: "jordan", via: "slack", reason: "no\uFFFDway\uFFFD \uFFFD!" },
    });
  });

  async function telegramRaw(body: string, secret = TG_SECRET) {
    const res = await fetch(`${s.url}/telegram/webhook`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-telegram-bot-api-secret-token": secret },
      body,
    });
    return { status: res.status, text: await res.text() };
  }
  let updateId = 1;
  const telegramUpdate = (update: Record<string, unknown>) =>
    telegramRaw(JSON.stringify({ update_id: updateId++, ...update }));

  test("a Telegram webhook body that is not an update is refused with 400, with the right secret too", async () => {
    for (const body of ["null", "[]", "42", '"update"', "true", "{}", '{"update_id":"1"}']) {
      const r = await telegramRaw(body);
      expect(r.status, `${body}: ${r.text}`).toBe(400);
      expect(JSON.parse(r.text).error.message).toMatch(/Telegram update/);
    }
    // Still 401 without the secret, whatever the body.
    expect((await telegramRaw("null", "wrong")).status).toBe(401);
  });

  test("Telegram updates of an unknown shape or with unknown button data get 200 and change nothing", async () => {
    const id = await file();
    const answered = telegram.calledWith("answerCallbackQuery").length;
    const from = { id: 7001, is_bot: false, first_name: "Jordan" };
    const bodies: Record<string, unknown>[] = [
      { frobnicate: { x: 1 } },
      { callback_query: { id: "cb1", from, chat_instance: "ci", data: `zz:${id}` } },
      { callback_query: { id: "cb2", from, chat_instance: "ci", data: `ap:${id}\u0000` } },
      { callback_query: { id: "cb3", chat_instance: "ci", data: `ap:${id}` } },
      { message: { message_id: 1, date: 0, chat: { id: 7001, type: "private" }, text: "hello" } },
      { message: { message_id: 2, date: 0, chat: { id: 7001, type: "private" }, from } },
    ];
    for (const b of bodies) {
      const r = await telegramUpdate(b);
      expect(r.status, `${JSON.stringify(b)}: ${r.text}`).toBe(200);
    }
    expect((await request(id)).status).toBe("pending");
    await telegram.next(
      () => telegram.calledWith("answerCallbackQuery").length >= answered + 2,
      "the unknown buttons to be answered",
    );
    expect(telegram.calledWith("answerCallbackQuery").at(-1)!.body.text).toMatch(/not recogni[sz]ed/);
    expect((await events("telegram.request_ignored")).length).toBeGreaterThanOrEqual(2);
  });

  test("a Telegram deny reason and a link code with NUL and unpaired surrogates are mended, never a 500", async () => {
    const id = await file();
    const from = { id: 7001, is_bot: false, first_name: "Jordan" };
    const r = await telegramUpdate({
      message: {
        message_id: 500,
        date: 0,
        chat: { id: 7001, type: "private" },
        from,
        text: "not\u0000now\udc00",
        reply_to_message: {
          message_id: 499,
          date: 0,
          chat: { id: 7001, type: "private" },
          from: { id: 999, is_bot: true, first_name: "Butler" },
          text: `Why deny ${id}? Reply with a reason.`,
        },
      },
    });
    expect(r.status, r.text).toBe(200);
    await until(async () => (await request(id)).status === "denied", "the denial");
    expect((await request(id)).decision).toMatchObject({ by: "jordan", reason: "not\uFFFDnow\uFFFD" });

    const code = "/start ab\u0000cd\ud800";
    const linked = await telegramUpdate(telegramMessage(7050, code));
    expect(linked.status, linked.text).toBe(200);
    // The answer to 7050 (the request's cards go to other chats, possibly at the same moment).
    const answer = () => telegram.calledWith("sendMessage").find((c) => String(c.body.chat_id) === "7050");
    await telegram.next(() => answer() !== undefined, "the bot's answer");
    expect(answer()!.body.text).toContain("not valid");
  });

  test.each([
    ["a NUL in a parameter value", { amount: "1\u0000" }, "body.params"],
    ["an unpaired surrogate in a parameter value", { memo: "x\ud800" }, "body.params"],
    ["a NUL in a nested parameter", { a: [{ b: "\u0000" }] }, "body.params"],
    ["a NUL in a parameter name", { "a\u0000": 1 }, "body.params"],
    ["an unpaired surrogate in a parameter name", { "\udfffx": 1 }, "body.params"],
  ])(
    "a one-shot call and its filing with %s are refused with 400 naming the field",
    async (_what, params, field) => {
      const call = { action: "pay:send", resource: "bank/acct-1", params };
      const denied = await s.authorize(agent, call);
      expect(denied.status, JSON.stringify(denied.body)).toBe(400);
      expect(denied.body.error.message).toContain(field);
      const r = await s.http("POST", "/v1/access-requests", agent, {
        ttl: "PT1H",
        reason: "one call",
        denial_event_id: denied.body.event_id ?? "evt_0000000000000000",
        params,
      });
      expect(r.status, JSON.stringify(r.body)).toBe(400);
      expect(r.body.error.message).toContain(field);
    },
  );

  test("NUL and unpaired surrogates in admin paths, queries and bodies are refused with 400, never a 500", async () => {
    const admin = s.server.adminToken;
    const cases: [string, string, unknown][] = [
      ["GET", "/v1/admin/access-requests/%00", undefined],
      ["GET", "/v1/admin/access-requests/req_%00", undefined],
      ["GET", "/v1/admin/access-requests?status=%00", undefined],
      ["GET", "/v1/admin/access-requests?project=%00", undefined],
      ["GET", "/v1/admin/grants?project=%00", undefined],
      ["POST", "/v1/admin/grants/%00/revoke", {}],
      ["POST", "/v1/admin/access-requests/%00/approve", { approver: "jordan" }],
      ["POST", "/v1/admin/credentials", { name: "STRIPE_API_KEY", value: "sk_\ud800" }],
      ["POST", "/v1/admin/credentials", { name: "STRIPE_API_KEY", value: "sk_\u0000" }],
      ["GET", "/v1/access-requests/%00", undefined],
      ["GET", "/v1/grants?project=%00", undefined],
    ];
    for (const [method, path, body] of cases) {
      const token = path.startsWith("/v1/admin") ? admin : path.includes("grants") ? jordan : agent;
      const r = await s.http(method, path, token, body);
      expect(r.status, `${method} ${path}: ${JSON.stringify(r.body)}`).toBe(400);
    }
  });

  test("NUL and unpaired surrogates in dashboard forms are refused, never a 500", async () => {
    const form = (path: string, fields: Record<string, string>) =>
      fetch(`${s.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams(fields).toString(),
        redirect: "manual",
      });
    for (const [path, fields] of [
      ["/dashboard/sign-in", { token: "bta_\u0000" }],
      ["/dashboard/sign-in", { token: "\ud800" }],
      ["/dashboard/sign-in/link", { code: "\u0000" }],
      ["/dashboard/sign-in/link", { code: "abc\udfff" }],
    ] as const) {
      const r = await form(path, fields);
      expect([400, 401], `${path} ${JSON.stringify(fields)}: ${r.status}`).toContain(r.status);
    }
    for (const q of ["agent=%00", "project=%00", "type=%00", "action=%00", "event=%00", "grant=%00"]) {
      const r = await fetch(`${s.url}/dashboard/history?${q}`, { redirect: "manual" });
      expect(r.status, q).toBeLessThan(500);
    }
  });

  test("the dashboard's JSONL export streams the same lines as the admin API's export", async () => {
    // Cards and notifications of earlier tests are still being written: let them finish first.
    await s.server.services.outbox.drain();
    const token = JSON.parse((await s.cli(["auditors", "token", "sam", "--json"])).stdout).token;
    const cookie = await s.dashboardCookie(token);
    const dash = await fetch(`${s.url}/dashboard/audit/export.jsonl?agent=billing-reconciler-1`, {
      headers: { cookie },
    });
    expect(dash.status).toBe(200);
    expect(dash.headers.get("content-type")).toBe("application/x-ndjson; charset=utf-8");
    expect(dash.headers.get("content-disposition")).toContain("butler-audit.jsonl");
    const text = await dash.text();
    const admin = await fetch(`${s.url}/v1/admin/audit/export?agent=billing-reconciler-1`, {
      headers: { authorization: `Bearer ${s.server.adminToken}` },
    });
    const expected = await admin.text();
    expect(expected.split("\n").length).toBeGreaterThan(5);
    expect(text).toBe(expected);
    for (const l of text.trim().split("\n")) expect(JSON.parse(l).agent).toBe("billing-reconciler-1");
  });

  describe("HEAD answers never carry a body", () => {
    const head = (path: string, extra = "") =>
      rawRequest(s.url, `HEAD ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${extra}\r\n`);

    test("431: headers too large", async () => {
      const r = await head("/healthz", `X-Big: ${"a".repeat(20_000)}\r\n`);
      expect(r.status).toBe(431);
      expect(r.body.length).toBe(0);
    });

    test("414: a path parameter too long", async () => {
      const r = await head(`/v1/access-requests/${"a".repeat(500)}`);
      expect(r.status).toBe(414);
      expect(r.body.length).toBe(0);
    });

    test("400: a request line the parser refuses", async () => {
      const r = await rawRequest(s.url, "HEAD /\u0001 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
      expect(r.status).toBe(400);
      expect(r.body.length).toBe(0);
    });

    test.each([
      ["/healthz", 200],
      ["/readyz", 200],
      ["/metrics", 200],
      ["/nowhere", 404],
      ["/v1/admin/agents", 401],
      ["/v1/access-requests", 401],
      ["/v1/access-requests/nope", 400],
      ["/dashboard", 303],
      ["/dashboard/audit/export.jsonl", 401],
      ["/dashboard/events", 401],
      ["/dashboard/assets/nope.css", 404],
      ["/.well-known/agent-card.json", 200],
    ])("HEAD %s answers %i without a body", async (path, status) => {
      const r = await head(path);
      expect(r.status).toBe(status);
      expect(r.body.length).toBe(0);
    });

    test("HEAD on the live event stream and the export ends at once, without a body", async () => {
      const token = JSON.parse((await s.cli(["auditors", "token", "sam", "--json"])).stdout).token;
      const cookie = await s.dashboardCookie(token);
      for (const path of ["/dashboard/events", "/dashboard/audit/export.jsonl", "/dashboard"]) {
        const r = await head(path, `Cookie: ${cookie}\r\n`);
        expect(r.status, path).toBe(200);
        expect(r.body.length, path).toBe(0);
      }
    }, 15_000);
  });
});

/**
 * A chat platform that cannot be reached, or that refuses the bot token, when the server starts:
 * the gateway still starts and decides, /healthz says which channel is degraded (and stays 200:
 * liveness), the token problem is logged as an error, and the channel connects by itself once the
 * platform answers.
 */
describe(`chat platforms unreachable or refusing the token at start (${ENGINE})`, () => {
  const slack = new FakeSlack();
  const telegram = new FakeTelegram();
  let slackProxy: TcpProxy;
  let telegramProxy: TcpProxy;
  const started: { server: RunningServer; env: TestEnv }[] = [];

  beforeAll(async () => {
    await slack.start();
    await telegram.start();
    slack.users.set("U0JORDAN", { email: "jordan@example.com", name: "jordan" });
    slackProxy = await new TcpProxy("127.0.0.1", Number(new URL(slack.url).port)).start();
    telegramProxy = await new TcpProxy("127.0.0.1", Number(new URL(telegram.url).port)).start();
  });
  afterAll(async () => {
    for (const s of started) {
      await s.server.close();
      await s.env.cleanup();
    }
    await slackProxy?.stop();
    await telegramProxy?.stop();
    await slack.stop();
    await telegram.stop();
  });

  async function start(env: Record<string, string>) {
    const lines: Record<string, any>[] = [];
    const log = createLogger("warn", {
      write(s: string) {
        lines.push(JSON.parse(s));
      },
    });
    const t = await createTestEnv({ policies: { "project-billing.yaml": BILLING }, env });
    const server = await startServer(loadConfig(t.env), log);
    started.push({ server, env: t });
    return { server, env: t, lines };
  }
  const health = async (url: string) => {
    const r = await fetch(`${url}/healthz`);
    return { status: r.status, body: (await r.json()) as Record<string, any> };
  };

  test("unreachable: the server starts and decides, reports both channels degraded, and connects when they answer", async () => {
    await slackProxy.refuse();
    await telegramProxy.refuse();
    const { server } = await start({
      SLACK_BOT_TOKEN: slack.botToken,
      SLACK_SIGNING_SECRET: SIGNING_SECRET,
      SLACK_API_URL: `http://127.0.0.1:${slackProxy.port}/api`,
      TELEGRAM_BOT_TOKEN: telegram.token,
      TELEGRAM_WEBHOOK_SECRET: TG_SECRET,
      TELEGRAM_API_ROOT: `http://127.0.0.1:${telegramProxy.port}`,
    });
    const h = await health(server.url);
    expect(h.status).toBe(200);
    expect(h.body).toMatchObject({
      status: "degraded",
      components: { database: "up", slack: "degraded", telegram: "degraded" },
    });
    const agent = (await server.services.admin.createAgentToken("billing-reconciler-1", "project-billing"))
      .token;
    const decided = await fetch(`${server.url}/v1/authorize`, {
      method: "POST",
      headers: { authorization: `Bearer ${agent}`, "content-type": "application/json" },
      body: JSON.stringify({ action: "aws:s3:GetObject", resource: "arn:aws:s3:::ledger-internal/x" }),
    });
    expect(decided.status).toBe(200);
    expect(((await decided.json()) as { decision: string }).decision).toBe("ALLOW");
    const filed = await fetch(`${server.url}/v1/access-requests`, {
      method: "POST",
      headers: { authorization: `Bearer ${agent}`, "content-type": "application/json" },
      body: JSON.stringify({
        action: "stripe:charges:read",
        resource: "stripe.com/v1/charges",
        ttl: "PT1H",
        reason: "while Slack is away",
      }),
    });
    expect(filed.status).toBe(201);
    const id = ((await filed.json()) as { access_request: { id: string } }).access_request.id;
    // Not connected yet: the platforms are asked to try again (they do), never a 500.
    const tg = await fetch(`${server.url}/telegram/webhook`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-telegram-bot-api-secret-token": TG_SECRET },
      body: JSON.stringify({
        update_id: 1,
        message: { message_id: 1, date: 0, chat: { id: 1, type: "private" } },
      }),
    });
    expect(tg.status).toBe(503);
    expect(tg.headers.get("retry-after")).toMatch(/^\d+$/);

    await slackProxy.open();
    await telegramProxy.open();
    await until(
      async () => (await health(server.url)).body.status === "ok",
      "both channels to connect",
      20_000,
    );
    expect((await health(server.url)).body.components).toEqual({
      database: "up",
      slack: "up",
      telegram: "up",
    });
    await until(async () => !!slack.cardFor(id) && !!telegram.cardFor(id), "the cards", 20_000);
  }, 60_000);

  test("a refused token: the server starts, logs an error, and reports the channel degraded", async () => {
    const { server, lines } = await start({
      SLACK_BOT_TOKEN: "xoxb-not-the-right-token",
      SLACK_SIGNING_SECRET: SIGNING_SECRET,
      SLACK_API_URL: slack.url,
      TELEGRAM_BOT_TOKEN: "999:not-the-right-token",
      TELEGRAM_WEBHOOK_SECRET: TG_SECRET,
      TELEGRAM_API_ROOT: telegram.url,
    });
    const h = await health(server.url);
    expect(h.status).toBe(200);
    expect(h.body.components).toMatchObject({ slack: "degraded", telegram: "degraded" });
    const errors = lines.filter((l) => l.level >= 50).map((l) => l.msg);
    expect(errors).toContain("slack refused the bot token: approvals in slack are off until it is fixed");
    expect(errors).toContain(
      "telegram refused the bot token: approvals in telegram are off until it is fixed",
    );
  });
});
