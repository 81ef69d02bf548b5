import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { FakeSlack } from "../fakes/fake-slack.js";
import { FakeTelegram } from "../fakes/fake-telegram.js";
import { whenAll } from "../fakes/observed.js";
import {
  chatEnv,
  postSlack,
  postTelegram,
  slackButton,
  slackSigned,
  telegramButton,
} from "../helpers/chat.js";
import { ENGINE } from "../helpers/db.js";
import { seedText } from "../helpers/policy.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { until } from "../helpers/wait.js";

const SIGNING_SECRET = "slack-signing-secret-for-tests";
const TG_SECRET = "tg-webhook-secret_1";
const BILLING = seedText().replace(
  "  - id: jordan\n    name: Jordan\n",
  "  - id: jordan\n    name: Jordan\n    slack: { email: jordan@example.com }\n    telegram: { user_id: 7001 }\n",
);
/** Whether a Telegram card still offers Approve or Deny. */
const decidable = (keyboard: { callback_data: string }[][] | undefined) =>
  (keyboard ?? []).flat().some((b) => /^(ap|a1|dn):/.test(b.callback_data));

const ELSEWHERE = `project: elsewhere
agents: [x]
approvers:
  - id: outsider
    slack: { user_id: U0OUTSIDER }
    telegram: { user_id: 7003 }
`;

const TREASURY = `project: treasury
agents: [treasury-bot]
approvers:
  - id: jordan
    name: Jordan
    slack: { email: jordan@example.com }
    telegram: { user_id: 7001 }
  - id: sam
    slack: { user_id: U0SAM }
    telegram: { user_id: 7002 }
settings:
  approvals: { low: 1, medium: 1, high: 2 }
`;

/**
 * Approving in chat, end to end: a running server, the real Bolt and grammY, and local fakes of
 * the Slack Web API and the Telegram Bot API. Payloads are signed (Slack) or carry the webhook
 * secret (Telegram) and are posted to the server's real endpoints.
 */
describe(`one-tap approvals in Slack and Telegram (${ENGINE})`, () => {
  const slack = new FakeSlack();
  const telegram = new FakeTelegram();
  let s: TestServer;
  let agent: string;

  beforeAll(async () => {
    await slack.start();
    await telegram.start();
    slack.users.set("U0JORDAN", { email: "jordan@example.com", name: "jordan" });
    slack.users.set("U0OUTSIDER", { email: "outsider@example.com", name: "outsider" });
    slack.users.set("U0SAM", { email: "sam@example.com", name: "sam" });
    slack.users.set("U0STRANGER", { email: "stranger@example.com", name: "stranger" });
    s = await startTestServer({
      policies: { "project-billing.yaml": BILLING, "elsewhere.yaml": ELSEWHERE, "treasury.yaml": TREASURY },
      env: chatEnv(slack, telegram, { slack: SIGNING_SECRET, telegram: TG_SECRET }),
    });
    agent = await s.agentToken("billing-reconciler-1", "project-billing");
  });
  afterAll(async () => {
    await s?.cleanup();
    await slack.stop();
    await telegram.stop();
  });

  async function file(
    call: { action: string; resource: string; branch?: string },
    reason = "reconcile the ledger",
  ) {
    const r = await s.http("POST", "/v1/access-requests", agent, { ...call, ttl: "PT24H", reason });
    expect(r.status).toBe(201);
    return r.body.access_request.id as string;
  }

  const signed = (body: string, ts?: number, secret = SIGNING_SECRET) => slackSigned(body, secret, ts);
  const slackPost = (payload: unknown, headers?: Record<string, string>) =>
    postSlack(s.url, payload, SIGNING_SECRET, headers);

  function slackPress(requestId: string, userId: string, actionId = "butler_approve", value = requestId) {
    const card = slack.cardFor(requestId)!;
    return slackPost(slackButton(userId, { actionId, value }, card, `${slack.url}/response`));
  }

  const telegramUpdate = (update: Record<string, unknown>, secret: string | undefined = TG_SECRET) =>
    postTelegram(s.url, update, secret);

  function telegramPress(requestId: string, fromId: number, data = `ap:${requestId}`) {
    return telegramUpdate(telegramButton(data, fromId, telegram.cardFor(requestId)?.messageId ?? 1));
  }

  const events = (type: string) => s.events(type);

  let first: string;

  test("a new request is posted as a card to the approver on both platforms", async () => {
    first = await file({ action: "stripe:charges:read", resource: "stripe.com/v1/charges" });
    await whenAll(
      [slack, telegram],
      () => !!slack.cardFor(first) && !!telegram.cardFor(first),
      "cards on both platforms",
    );
    const sc = slack.cardFor(first)!;
    expect(sc.channel).toBe("D0JORDAN"); // jordan, found by email, in a direct message
    expect(JSON.stringify(sc.blocks)).toContain("butler_approve");
    const tc = telegram.cardFor(first)!;
    expect(tc.chatId).toBe("7001");
    expect(tc.keyboard!.flat().map((b) => b.callback_data)).toEqual([
      `ap:${first}`,
      `a1:${first}`,
      `dn:${first}`,
    ]);
  });

  test("forged or stale Slack signatures and a missing Telegram secret get 401, change nothing, and are audited", async () => {
    const payload = { type: "block_actions", user: { id: "U0JORDAN" }, actions: [] };
    const body = `payload=${encodeURIComponent(JSON.stringify(payload))}`;
    const now = Math.floor(Date.now() / 1000);
    expect((await slackPost(payload, signed(body, now, "wrong-secret"))).status).toBe(401);
    expect((await slackPost(payload, signed(body, now - 400))).status).toBe(401);
    expect((await slackPost(payload, signed(body, now + 400))).status).toBe(401);
    expect((await slackPost(payload, {})).status).toBe(401);
    expect(
      await telegramUpdate(
        { message: { message_id: 1, date: 0, chat: { id: 1, type: "private" }, text: "hi" } },
        "",
      ),
    ).toBe(401);
    expect(
      await telegramUpdate(
        { message: { message_id: 1, date: 0, chat: { id: 1, type: "private" }, text: "hi" } },
        "nope",
      ),
    ).toBe(401);
    const rejected = [
      ...(await events("slack.request_rejected")),
      ...(await events("telegram.request_rejected")),
    ].map((e) => e.reason);
    expect(rejected).toEqual([
      "signature mismatch",
      expect.stringMatching(/^stale timestamp/),
      expect.stringMatching(/^stale timestamp/),
      "missing or malformed X-Slack-Request-Timestamp",
      "missing webhook secret",
      "wrong webhook secret",
    ]);
    expect((await s.http("GET", `/v1/access-requests/${first}`, agent)).body.status).toBe("pending");
  });

  test("an unknown Telegram user and an approver of another project change nothing and are told privately", async () => {
    expect(await telegramPress(first, 7099)).toBe(200);
    expect(await telegramPress(first, 7003)).toBe(200);
    await telegram.next(() => telegram.calledWith("answerCallbackQuery").length >= 2, "callback answers");
    const answers = telegram.calledWith("answerCallbackQuery").map((c) => c.body);
    expect(answers.slice(-2)).toEqual([
      expect.objectContaining({ text: "you are not an approver for project-billing", show_alert: true }),
      expect.objectContaining({ text: "you are not an approver for project-billing", show_alert: true }),
    ]);
    expect((await s.http("GET", `/v1/access-requests/${first}`, agent)).body.status).toBe("pending");
    const refused = (await events("access_request.review_refused")).map((e) => e.approver);
    expect(refused).toEqual(["telegram:7099", "outsider"]);
  });

  test("approving in Telegram grants, and both cards show who decided, where, and until when", async () => {
    expect(await telegramPress(first, 7001)).toBe(200);
    await until(
      async () => (await s.http("GET", `/v1/access-requests/${first}`, agent)).body.status === "approved",
      "approval",
    );
    await slack.next(
      () => !JSON.stringify(slack.cardFor(first)!.blocks).includes("butler_approve"),
      "the Slack card to lose its buttons",
    );
    await telegram.next(
      () => !decidable(telegram.cardFor(first)!.keyboard),
      "the Telegram card to lose its Approve and Deny buttons",
    );
    // Approved: the one button left makes the grant a permanent rule.
    expect(
      telegram
        .cardFor(first)!
        .keyboard?.flat()
        .map((b) => b.callback_data),
    ).toEqual([`rm:${first}`]);
    expect(JSON.stringify(slack.cardFor(first)!.blocks)).toContain(
      "Approved by jordan via telegram; the grant expires",
    );
    expect(slack.cardFor(first)!.replies.join("\n")).toContain("Approved by jordan via telegram");
    expect(telegram.cardFor(first)!.text).toContain("Approved by jordan via telegram");
    expect(
      (await s.authorize(agent, { action: "stripe:charges:read", resource: "stripe.com/v1/charges" })).body
        .decision,
    ).toBe("ALLOW");
  });

  test("a second press, in Slack, says who already decided and changes nothing", async () => {
    const r = await slackPress(first, "U0JORDAN");
    expect(r.status).toBe(200);
    await slack.next(() => slack.calledWith("chat.postEphemeral").length > 0, "an ephemeral answer");
    expect(slack.calledWith("chat.postEphemeral").at(-1)!.args).toMatchObject({
      user: "U0JORDAN",
      text: expect.stringContaining("already approved by jordan"),
    });
  });

  test("revoking the grant from the CLI refreshes both cards, with who revoked it", async () => {
    const out = await s.cli(["grants", "revoke", first, "--reason", "ledger closed"]);
    expect(out.code, out.stderr).toBe(0);
    await slack.next(
      () => slack.cardFor(first)!.replies.some((r) => r.includes("The grant was revoked by")),
      "a Slack thread reply about the revocation",
    );
    await telegram.next(
      () => telegram.cardFor(first)!.text.includes("the grant was revoked by"),
      "the Telegram card to say the grant was revoked",
    );
    expect(slack.cardFor(first)!.replies.at(-1)).toContain("ledger closed");
    expect(JSON.stringify(slack.cardFor(first)!.blocks)).toContain("the grant was revoked by");
    expect(JSON.stringify(slack.cardFor(first)!.blocks)).not.toContain("butler_approve");
    expect(
      (await s.authorize(agent, { action: "stripe:charges:read", resource: "stripe.com/v1/charges" })).body
        .decision,
    ).toBe("DENY");
  });

  test("denying in Slack asks for a reason in a modal, and the reason reaches the agent", async () => {
    const second = await file(
      { action: "git:push", resource: "reidataai/billing-ledger", branch: "main" },
      "hotfix",
    );
    await slack.next(() => !!slack.cardFor(second), "the Slack card");
    expect((await slackPress(second, "U0JORDAN", "butler_deny")).status).toBe(200);
    await slack.next(() => slack.calledWith("views.open").length > 0, "the modal");
    const view = slack.calledWith("views.open").at(-1)!.args.view;
    expect(view).toMatchObject({ callback_id: "butler_deny_modal", private_metadata: second });
    const submit = await slackPost({
      type: "view_submission",
      team: { id: "T0FAKE", domain: "fake" },
      user: { id: "U0JORDAN", username: "jordan", name: "jordan", team_id: "T0FAKE" },
      api_app_id: "A0FAKE",
      token: "legacy",
      trigger_id: "t2",
      view: {
        ...view,
        id: "V0FAKE",
        team_id: "T0FAKE",
        state: { values: { reason: { value: { type: "plain_text_input", value: "use a feature branch" } } } },
      },
    });
    expect(submit.status).toBe(200);
    const after = await s.http("GET", `/v1/access-requests/${second}`, agent);
    expect(after.body).toMatchObject({
      status: "denied",
      decision: { by: "jordan", via: "slack", reason: "use a feature branch" },
    });
    await telegram.next(
      // The card must exist first: a card not yet posted has no keyboard either.
      () => telegram.cardFor(second) !== undefined && telegram.cardFor(second)!.keyboard === undefined,
      "the Telegram card to show the denial",
    );
    expect(telegram.cardFor(second)!.text).toContain("Denied by jordan via slack: use a feature branch");
  });

  test("with Slack answering 429 then 200, the card still arrives; with Telegram down, Slack is unaffected and Telegram catches up", async () => {
    // Only the new card is rate limited (a refresh of an earlier card may be posted meanwhile).
    slack.script.set("chat.postMessage", [
      {
        status: 429,
        headers: { "retry-after": "1" },
        body: { ok: false, error: "ratelimited" },
        when: (args) => !args.thread_ts && JSON.stringify(args.blocks ?? "").includes("old.csv"),
      },
    ]);
    telegram.down = true;
    const third = await file({
      action: "aws:s3:DeleteObject",
      resource: "arn:aws:s3:::ledger-internal/old.csv",
    });
    await slack.next(() => !!slack.cardFor(third), "the Slack card after the rate limit");
    expect(telegram.cardFor(third)).toBeUndefined();
    telegram.down = false;
    await telegram.next(() => !!telegram.cardFor(third), "the Telegram card once Telegram is back");
    expect(
      slack.calledWith("chat.postMessage").filter((c) => JSON.stringify(c.args.blocks ?? "").includes(third)),
    ).toHaveLength(2);
  });

  function telegramText(fromId: number, text: string) {
    const command = /^\/\w+/.exec(text);
    return telegramUpdate({
      message: {
        message_id: Math.floor(Math.random() * 1e6),
        date: 0,
        chat: { id: fromId, type: "private" },
        from: { id: fromId, is_bot: false, first_name: "User" },
        text,
        ...(command ? { entities: [{ type: "bot_command", offset: 0, length: command[0].length }] } : {}),
      },
    });
  }

  test("a one-time deep link binds the Telegram account that opens it to the approver", async () => {
    const link = JSON.parse((await s.cli(["approvers", "link", "jordan", "--telegram", "--json"])).stdout);
    expect(link.url).toMatch(/^https:\/\/t\.me\/butler_test_bot\?start=[A-Za-z0-9_-]{24}$/);
    const code = new URL(link.url).searchParams.get("start")!;
    expect(await telegramText(7010, `/start ${code}`)).toBe(200);
    await telegram.next(
      () => telegram.calledWith("sendMessage").some((c) => c.body.chat_id === 7010),
      "the bot's answer",
    );
    expect(
      telegram
        .calledWith("sendMessage")
        .filter((c) => c.body.chat_id === 7010)
        .at(-1)!.body.text,
    ).toBe("This Telegram account is now connected to approver jordan.");
    expect(await telegramText(7011, `/start ${code}`)).toBe(200);
    await telegram.next(
      () => telegram.calledWith("sendMessage").some((c) => c.body.chat_id === 7011),
      "the bot's refusal",
    );
    expect(
      telegram
        .calledWith("sendMessage")
        .filter((c) => c.body.chat_id === 7011)
        .at(-1)!.body.text,
    ).toContain("not valid");

    const fourth = await file({
      action: "git:push",
      resource: "reidataai/billing-ledger",
      branch: "release-1",
    });
    await telegram.next(() => !!telegram.cardFor(fourth, "7010"), "the card for the linked account");
    expect(await telegramPress(fourth, 7010)).toBe(200);
    await until(
      async () => (await s.http("GET", `/v1/access-requests/${fourth}`, agent)).body.status === "approved",
      "approval by the linked account",
    );
    expect((await s.http("GET", `/v1/access-requests/${fourth}`, agent)).body.decision).toMatchObject({
      by: "jordan",
      via: "telegram",
    });
    expect((await events("approver.linked")).map((e) => [e.approver, e.user_id])).toEqual([
      ["jordan", "7010"],
    ]);
    expect(await events("approver.link_refused")).toHaveLength(1);
  });

  test("denying in Telegram asks for a reason by reply", async () => {
    const fifth = await file({
      action: "git:push",
      resource: "reidataai/billing-ledger",
      branch: "release-2",
    });
    await telegram.next(() => !!telegram.cardFor(fifth, "7001"), "the card");
    expect(await telegramPress(fifth, 7001, `dn:${fifth}`)).toBe(200);
    await telegram.next(
      () =>
        telegram.calledWith("sendMessage").some((c) => String(c.body.text).startsWith(`Why deny ${fifth}?`)),
      "the prompt",
    );
    const prompt = [...telegram.messages.values()].find((m) => m.text.startsWith(`Why deny ${fifth}?`))!;
    const status = await telegramUpdate({
      message: {
        message_id: 555,
        date: 0,
        chat: { id: 7001, type: "private" },
        from: { id: 7001, is_bot: false, first_name: "Jordan" },
        text: "not during the freeze",
        reply_to_message: {
          message_id: prompt.messageId,
          date: 0,
          chat: { id: 7001, type: "private" },
          from: { id: 999, is_bot: true, first_name: "Butler" },
          text: prompt.text,
        },
      },
    });
    expect(status).toBe(200);
    await until(
      async () => (await s.http("GET", `/v1/access-requests/${fifth}`, agent)).body.status === "denied",
      "the denial",
    );
    expect((await s.http("GET", `/v1/access-requests/${fifth}`, agent)).body.decision).toMatchObject({
      by: "jordan",
      via: "telegram",
      reason: "not during the freeze",
    });
  });

  test("a high-risk request shows 1 of 2 approvals on every card and never counts one person twice", async () => {
    const bot = await s.agentToken("treasury-bot", "treasury");
    const r = await s.http("POST", "/v1/access-requests", bot, {
      action: "stripe:refunds:create",
      resource: "stripe.com/v1/refunds",
      ttl: "PT1H",
      reason: "refund a duplicate charge",
    });
    expect(r.status).toBe(201);
    const id = r.body.access_request.id as string;
    const slackCards = () =>
      [...slack.messages.values()].filter((m) => JSON.stringify(m.blocks).includes(id));
    await whenAll(
      [slack, telegram],
      () => slackCards().length === 2 && !!telegram.cardFor(id, "7001") && !!telegram.cardFor(id, "7002"),
      "cards for jordan and sam on both platforms",
    );
    expect(
      slackCards()
        .map((m) => m.channel)
        .sort(),
    ).toEqual(["D0JORDAN", "D0SAM"]);
    expect(JSON.stringify(slackCards()[0]!.blocks)).toContain("0 of 2 approvals");

    expect((await slackPress(id, "U0JORDAN")).status).toBe(200);
    await whenAll(
      [slack, telegram],
      () =>
        slackCards().every((m) => JSON.stringify(m.blocks).includes("1 of 2 approvals")) &&
        telegram.cardFor(id, "7001")!.text.includes("1 of 2 approvals") &&
        telegram.cardFor(id, "7002")!.text.includes("1 of 2 approvals"),
      "every card to show 1 of 2 approvals",
    );
    expect(JSON.stringify(slackCards()[0]!.blocks)).toContain("butler_approve");

    // jordan again, from the other platform: still one approval, and told so.
    const answered = telegram.calledWith("answerCallbackQuery").length;
    expect(await telegramPress(id, 7001)).toBe(200);
    await telegram.next(() => telegram.calledWith("answerCallbackQuery").length > answered, "an answer");
    expect(telegram.calledWith("answerCallbackQuery").at(-1)!.body.text).toContain(
      "You already approved this request: 1 of 2 approvals",
    );
    expect((await s.http("GET", `/v1/access-requests/${id}`, bot)).body).toMatchObject({
      status: "pending",
      approvals: [expect.objectContaining({ approver: "jordan", channel: "slack" })],
    });

    expect(await telegramPress(id, 7002)).toBe(200);
    await until(
      async () => (await s.http("GET", `/v1/access-requests/${id}`, bot)).body.status === "approved",
      "the second approval to grant",
    );
    await whenAll(
      [slack, telegram],
      () =>
        slackCards().every((m) => !JSON.stringify(m.blocks).includes("butler_approve")) &&
        !decidable(telegram.cardFor(id, "7001")!.keyboard) &&
        !decidable(telegram.cardFor(id, "7002")!.keyboard),
      "every card to lose its Approve and Deny buttons",
    );
    expect(JSON.stringify(slackCards()[0]!.blocks)).toContain("2 of 2 approvals");
  });

  test("butler telegram set-webhook registers the server's webhook with its secret", async () => {
    const r = await s.cli(["telegram", "set-webhook", "--json"]);
    expect(r.code).toBe(0);
    expect(telegram.webhook).toEqual({ url: `${s.url}/telegram/webhook`, secret_token: TG_SECRET });
    // Telegram itself takes https:// webhooks only: a plain http:// one works with a stand-in API alone.
    expect(JSON.parse(r.stdout)).toEqual({ url: `${s.url}/telegram/webhook` });
    expect(r.stderr).toBe(
      `butler: warning: ${s.url}/telegram/webhook is not an https:// URL: Telegram delivers updates to https:// webhooks only (set BUTLER_PUBLIC_URL to the server's public https:// address); only a stand-in of the Telegram API accepts it\n`,
    );
  });

  test("Remember on a chat card makes the approved grant a rule of the policy file; every card says so and the button goes", async () => {
    const id = await file({ action: "stripe:invoices:read", resource: "stripe.com/v1/invoices" });
    await whenAll([slack, telegram], () => !!slack.cardFor(id) && !!telegram.cardFor(id), "cards");
    expect((await slackPress(id, "U0JORDAN")).status).toBe(200);
    await telegram.next(
      () => JSON.stringify(telegram.cardFor(id)?.keyboard ?? []).includes(`rm:${id}`),
      "the approved card offers Remember",
    );
    expect(JSON.stringify(slack.cardFor(id)!.blocks)).toContain("butler_remember");
    expect((await telegramPress(id, 7001, `rm:${id}`)) as unknown).toBe(200);
    await whenAll(
      [slack, telegram],
      () =>
        (telegram.cardFor(id)?.text ?? "").includes("made a permanent rule of") &&
        !JSON.stringify(slack.cardFor(id)!.blocks).includes("butler_remember"),
      "every card says it is a rule, with no Remember button",
    );
    expect(telegram.cardFor(id)!.keyboard).toBeUndefined();
    const text = await readFile(join(s.policiesDir, "project-billing.yaml"), "utf8");
    expect(text).toContain(`- id: remembered-${id}`);
    expect((await s.events("policy.remembered"))[0]).toMatchObject({
      request_id: id,
      remembered_by: ["jordan"],
    });
  });
});
