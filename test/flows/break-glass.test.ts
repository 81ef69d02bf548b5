import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { FakeSlack } from "../fakes/fake-slack.js";
import { FakeTelegram } from "../fakes/fake-telegram.js";
import { whenAll } from "../fakes/observed.js";
import { chatEnv, postTelegram } from "../helpers/chat.js";
import { ENGINE } from "../helpers/db.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const PAYMENTS = `project: payments
agents: [bot]
approvers:
  - id: jordan
    slack: { user_id: U0JORDAN }
    telegram: { user_id: 7001 }
  - id: sam
    slack: { user_id: U0SAM }
    telegram: { user_id: 7002 }
settings:
  break_glass: { people: [jordan], max_ttl: PT30M }
  channels:
    slack: [C0APPROVE]
    telegram: [-1001]
security:
  slack: [C0SECURE]
  telegram: [-1002]
`;

const CALL = { action: "aws:s3:PutObject", resource: "arn:aws:s3:::payments/fix" };

/**
 * Break-glass: a named person opens emergency access at once; the next decision allows it, every
 * ALLOW and the audit say so, the approvers' rooms and the security rooms hear of it on Slack and
 * Telegram (real Bolt and grammY against local fakes), and a second person's review closes it.
 */
describe(`break-glass (${ENGINE})`, () => {
  const slack = new FakeSlack();
  const telegram = new FakeTelegram();
  let s: TestServer;
  let bot: string;
  let jordan: string;
  let sam: string;
  let outsider: string;
  let kim: string;

  beforeAll(async () => {
    await slack.start();
    await telegram.start();
    for (const c of ["C0APPROVE", "C0SECURE"]) slack.channels.add(c);
    s = await startTestServer({
      policies: {
        "payments.yaml": PAYMENTS,
        "elsewhere.yaml": "project: elsewhere\nagents: [x]\napprovers:\n  - id: outsider\n",
        // No rooms and no accounts in the file: the approvers' linked accounts are where it goes.
        "quiet.yaml":
          "project: quiet\nagents: [q-bot]\napprovers:\n  - id: kim\n  - id: lee\nsettings:\n  break_glass: { people: [kim] }\n",
      },
      env: chatEnv(slack, telegram, { slack: "slack-secret", telegram: "tg-secret_1" }),
    });
    bot = await s.agentToken("bot", "payments");
    jordan = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
    sam = JSON.parse((await s.cli(["approvers", "token", "sam", "--json"])).stdout).token;
    outsider = JSON.parse((await s.cli(["approvers", "token", "outsider", "--json"])).stdout).token;
    kim = JSON.parse((await s.cli(["approvers", "token", "kim", "--json"])).stdout).token;
  });
  afterAll(async () => {
    await s?.cleanup();
    await slack.stop();
    await telegram.stop();
  });

  const open = (token: string, body: Record<string, unknown>) =>
    s.http("POST", "/v1/break-glass", token, { project: "payments", agent: "bot", ...CALL, ...body });

  test("only a named person, for at most the limit, with a reason", async () => {
    expect((await open(bot, { reason: "x" })).status).toBe(403);
    const notNamed = await open(sam, { reason: "outage" });
    expect(notNamed.status).toBe(403);
    expect(notNamed.body.error.message).toContain("settings.break_glass.people");
    const tooLong = await open(jordan, { reason: "outage", ttl: "PT2H" });
    expect(tooLong.status).toBe(400);
    expect(tooLong.body.error.message).toContain("longer than the break-glass limit of payments (PT30M)");
    expect((await open(jordan, { reason: "  " })).status).toBe(400);
    // A call that could not load as a grant on every instance is refused before anything is written.
    const tooBig = await open(jordan, {
      reason: "outage",
      resource: `arn:aws:s3:::payments/${"k".repeat(1100)}`,
    });
    expect(tooBig.status).toBe(400);
    expect(tooBig.body.error.message).toContain("cannot be written as a grant");
    expect(await s.events("break_glass.opened")).toEqual([]);
    expect((await s.authorize(bot, CALL)).body.decision).toBe("DENY");
  });

  test("live within one decision, marked in every ALLOW and the audit, loud in every room, reviewed by a second person", async () => {
    const opened = await open(jordan, { reason: "payments outage <b>now</b>", ttl: "PT15M" });
    expect(opened.status, JSON.stringify(opened.body)).toBe(201);
    const id = opened.body.request_id as string;
    const allowed = await s.authorize(bot, CALL);
    expect(allowed.body).toMatchObject({
      decision: "ALLOW",
      grant_id: id,
      approved_by: "break-glass:jordan",
    });
    const [line] = (await s.events("gateway.allowed")).filter((e) => e.grant_id === id);
    expect(line).toMatchObject({ break_glass: true, approved_by: "break-glass:jordan" });
    expect((await s.events("break_glass.opened"))[0]).toMatchObject({
      request_id: id,
      by: "jordan",
      ttl: "PT15M",
    });
    expect((await s.events("grant.applied")).find((e) => e.grant_id === id)).toMatchObject({
      break_glass: true,
    });

    // Loud: the approvers' rooms and the security rooms, on both platforms.
    const rooms = () => ({
      slack: [...slack.messages.values()]
        .filter((m) => m.text.includes("BREAK-GLASS"))
        .map((m) => m.channel)
        .sort(),
      telegram: [...telegram.messages.values()]
        .filter((m) => m.text.includes("BREAK-GLASS"))
        .map((m) => m.chatId)
        .sort(),
    });
    await whenAll(
      [slack, telegram],
      () => rooms().slack.length === 2 && rooms().telegram.length === 2,
      "alerts",
    );
    expect(rooms()).toEqual({ slack: ["C0APPROVE", "C0SECURE"], telegram: ["-1001", "-1002"] });
    const tg = [...telegram.messages.values()].find((m) => m.text.includes("BREAK-GLASS"))!;
    expect(tg.text).toContain("payments outage &lt;b&gt;now&lt;/b&gt;");
    expect(JSON.stringify(tg.keyboard)).toContain("Acknowledge");

    // The review: not the person who broke the glass; the second person's closes it, once.
    const self = await s.http("POST", `/v1/break-glass/${id}/review`, jordan);
    expect(self.status).toBe(403);
    expect(self.body.error.message).toContain("jordan broke the glass: a second person reviews it");
    expect((await s.http("POST", `/v1/break-glass/${id}/review`, outsider)).status).toBe(404);
    const review = await s.http("POST", `/v1/break-glass/${id}/review`, sam);
    expect(review.status, JSON.stringify(review.body)).toBe(200);
    expect(review.body).toMatchObject({ request_id: id, reviewed_by: "sam" });
    expect((await s.http("POST", `/v1/break-glass/${id}/review`, sam)).status).toBe(409);
    expect((await s.events("break_glass.reviewed"))[0]).toMatchObject({ request_id: id, by: "sam" });
    const kept = await s.http("POST", `/v1/access-requests/${id}/remember`, sam);
    expect(kept.status).toBe(409);
    expect(kept.body.error.message).toContain("emergency access never becomes a permanent rule");
    const request = await s.http("GET", `/v1/access-requests/${id}`, sam);
    expect(request.body).toMatchObject({
      status: "approved",
      decision: { by: "jordan", via: "break-glass" },
    });
  });

  test("with no rooms and no accounts in the file, it reaches the accounts approvers linked themselves", async () => {
    const link = JSON.parse((await s.cli(["approvers", "link", "lee", "--telegram", "--json"])).stdout);
    const code = new URL(link.url).searchParams.get("start")!;
    const start = {
      message: {
        message_id: 1,
        date: 0,
        chat: { id: 7020, type: "private" },
        from: { id: 7020, is_bot: false, first_name: "Lee" },
        text: `/start ${code}`,
        entities: [{ type: "bot_command", offset: 0, length: 6 }],
      },
    };
    expect(await postTelegram(s.url, start, "tg-secret_1")).toBe(200);
    await telegram.next(
      () => telegram.calledWith("sendMessage").some((c) => c.body.chat_id === 7020),
      "the bot's answer to the link",
    );
    const opened = await s.http("POST", "/v1/break-glass", kim, {
      project: "quiet",
      agent: "q-bot",
      action: "aws:s3:PutObject",
      resource: "arn:aws:s3:::quiet/fix",
      reason: "outage",
    });
    expect(opened.status, JSON.stringify(opened.body)).toBe(201);
    await telegram.next(
      () =>
        [...telegram.messages.values()].some((m) => m.chatId === "7020" && m.text.includes("BREAK-GLASS")),
      "the break-glass alert on lee's linked account",
    );
  });
});
