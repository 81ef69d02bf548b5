import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { FakeSlack } from "../fakes/fake-slack.js";
import { FakeTelegram } from "../fakes/fake-telegram.js";
import { ENGINE } from "../helpers/db.js";
import { seedText } from "../helpers/policy.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { until } from "../helpers/wait.js";

const BILLING = seedText().replace(
  "  - id: jordan\n    name: Jordan\n",
  "  - id: jordan\n    name: Jordan\n    slack: { user_id: U0JORDAN }\n    telegram: { user_id: 7001 }\n",
);

/**
 * The modes for deployments without a public URL: Slack Socket Mode (against a fake that serves
 * apps.connections.open and the WebSocket it returns) and Telegram long polling.
 */
describe(`Slack Socket Mode and Telegram long polling (${ENGINE})`, () => {
  const slack = new FakeSlack();
  const telegram = new FakeTelegram();
  let s: TestServer;
  let agent: string;

  beforeAll(async () => {
    await slack.start();
    await telegram.start();
    slack.users.set("U0JORDAN", { email: "jordan@example.com", name: "jordan" });
    s = await startTestServer({
      policies: { "project-billing.yaml": BILLING },
      env: {
        SLACK_BOT_TOKEN: slack.botToken,
        SLACK_APP_TOKEN: slack.appToken,
        SLACK_API_URL: slack.url,
        TELEGRAM_BOT_TOKEN: telegram.token,
        TELEGRAM_MODE: "polling",
        TELEGRAM_API_ROOT: telegram.url,
      },
    });
    agent = await s.agentToken("billing-reconciler-1", "project-billing");
  });
  afterAll(async () => {
    await s?.cleanup();
    await slack.stop();
    await telegram.stop();
  });

  async function file(branch: string) {
    const r = await s.http("POST", "/v1/access-requests", agent, {
      action: "git:push",
      resource: "reidataai/billing-ledger",
      branch,
      ttl: "PT1H",
      reason: "release",
    });
    expect(r.status).toBe(201);
    return r.body.access_request.id as string;
  }
  const status = async (id: string) => (await s.http("GET", `/v1/access-requests/${id}`, agent)).body;

  test("no webhook endpoints are exposed in these modes", async () => {
    expect((await fetch(`${s.url}/slack/events`, { method: "POST" })).status).toBe(404);
    expect((await fetch(`${s.url}/telegram/webhook`, { method: "POST" })).status).toBe(404);
    expect(slack.calledWith("apps.connections.open")).toHaveLength(1);
    await slack.next(() => slack.socketConnected, "the Socket Mode connection");
  });

  test("a button pressed in Slack arrives over the socket, is acknowledged, and decides", async () => {
    const id = await file("release-socket");
    await slack.next(() => !!slack.cardFor(id), "the Slack card");
    const card = slack.cardFor(id)!;
    const ack = await slack.sendEnvelope("interactive", {
      type: "block_actions",
      team: { id: "T0FAKE", domain: "fake" },
      user: { id: "U0JORDAN", username: "jordan", name: "jordan", team_id: "T0FAKE" },
      api_app_id: "A0FAKE",
      token: "legacy",
      container: { type: "message", message_ts: card.ts, channel_id: card.channel, is_ephemeral: false },
      trigger_id: "trigger",
      channel: { id: card.channel, name: "directmessage" },
      message: { ts: card.ts, text: card.text, blocks: card.blocks },
      actions: [
        {
          type: "button",
          action_id: "butler_approve",
          block_id: "butler_actions",
          value: id,
          action_ts: "1",
        },
      ],
    });
    expect(ack.envelope_id).toBeTruthy();
    await until(async () => (await status(id)).status === "approved", "the approval");
    expect((await status(id)).decision).toMatchObject({ by: "jordan", via: "slack" });
  });

  test("a button pressed in Telegram arrives by long polling and decides", async () => {
    const id = await file("release-polling");
    await telegram.next(() => !!telegram.cardFor(id, "7001"), "the Telegram card");
    telegram.queueUpdate({
      callback_query: {
        id: "cbq-poll",
        from: { id: 7001, is_bot: false, first_name: "Jordan", username: "jordan" },
        chat_instance: "ci",
        data: `a1:${id}`,
        message: {
          message_id: telegram.cardFor(id, "7001")!.messageId,
          date: 0,
          chat: { id: 7001, type: "private" },
          text: "card",
        },
      },
    });
    await until(async () => (await status(id)).status === "approved", "the approval");
    const grant = (await status(id)).grant;
    expect(Date.parse(grant.expires_at) - Date.parse((await status(id)).decision.at)).toBe(3600_000);
    expect(telegram.calledWith("getUpdates").length).toBeGreaterThan(0);
  });
});
