import { type Task, TaskState } from "@a2a-js/sdk";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { FakeSlack } from "../fakes/fake-slack.js";
import { FakeTelegram } from "../fakes/fake-telegram.js";
import { whenAll } from "../fakes/observed.js";
import { a2aClient, ask, grantOf, statusText } from "../helpers/a2a.js";
import { chatEnv } from "../helpers/chat.js";
import { ENGINE } from "../helpers/db.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const SHOP = `project: shop
agents: [billing-bot, helper-bot]
providers: [stripe]
grants:
  - service: stripe
    actions: [customers:read]
approvers:
  - id: jordan
    slack: { email: jordan@example.com }
    telegram: { user_id: 7001 }
settings:
  approvals: { low: 1, medium: 1, high: 1 }
`;

const PAYOUTS = `project: payouts
agents: [payout-bot, other-bot]
grants:
  - id: capped-refunds
    service: stripe
    actions: [refunds:create]
    resources: ["stripe.com/v1/refunds/big"]
    constraints:
      amount: { max: 100 }
approvers:
  - id: jordan
settings:
  approvals: { low: 1, medium: 1, high: 1 }
`;

const CHARGES = "stripe.com/v1/charges";
const PATTERN_FACTS = [
  `Covers every resource matching ${CHARGES}/*, not only ${CHARGES}/ch_1 (the call that was denied)`,
  "Any parameters: a grant from a request sets no limits on them",
  "Opens 1 provider operation: stripe retrieve_charge (GET /v1/charges/{charge})",
  "Only for billing-bot, for PT2H after approval; then it expires on its own",
  `In the last 30 days it would have allowed 2 of billing-bot's denied calls (${CHARGES}/ch_1 ×1, ${CHARGES}/ch_2 ×1); none was refused by a parameter constraint or deny pattern`,
];

/** What approvers read: also the other resources (any agent's) the glob matches, made-up lines escaped. */
const SEEN = `Also matches 3 other resources the project's calls named in the last 30 days: ${CHARGES}/ch_2, ${CHARGES}/ch_3, ${CHARGES}/ch_4\\u{a}•\\u{20}Forged\\u{20}fact`;
const CARD_FACTS = [PATTERN_FACTS[0]!, SEEN, ...PATTERN_FACTS.slice(1)];

/**
 * What an approver reads before deciding, on every surface: a glob grant's blast radius on the
 * Slack and Telegram cards (real Bolt and grammY against local fakes), the dashboard page, the
 * A2A task's status and the API.
 */
describe(`decision support: a glob grant's blast radius (${ENGINE})`, () => {
  const slack = new FakeSlack();
  const telegram = new FakeTelegram();
  let s: TestServer;
  let bot: string;
  let helper: string;
  let jordan: string;

  beforeAll(async () => {
    await slack.start();
    await telegram.start();
    slack.users.set("U0JORDAN", { email: "jordan@example.com", name: "jordan" });
    s = await startTestServer({
      policies: { "shop.yaml": SHOP, "payouts.yaml": PAYOUTS },
      env: chatEnv(slack, telegram, { slack: "slack-secret", telegram: "tg-secret_1" }),
    });
    bot = await s.agentToken("billing-bot", "shop");
    helper = await s.agentToken("helper-bot", "shop");
    jordan = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
  });
  afterAll(async () => {
    await s?.cleanup();
    await slack.stop();
    await telegram.stop();
  });

  const read = async (token: string, resource: string, action = "stripe:charges:read") => {
    const r = await s.authorize(token, { action, resource });
    return r.body as { decision: string; event_id: string };
  };

  test("a resource_pattern that does not cover the denied call, starts with a wildcard, is no glob or is malformed is refused with a 400 naming it", async () => {
    const denied = await read(bot, "stripe.com/v1/balance/b_9", "stripe:balance:read");
    const ask = (resource_pattern: string) =>
      s.http("POST", "/v1/access-requests", bot, {
        denial_event_id: denied.event_id,
        resource_pattern,
        reason: "reports",
      });
    const cases: [string, RegExp][] = [
      [
        "stripe.com/v1/refunds/*",
        /^resource_pattern: "stripe.com\/v1\/refunds\/\*" does not match the call's resource/,
      ],
      ["*/b_9", /^resource_pattern: must start with literal text/],
      ["stripe.com/v1/balance/[a]*", /^resource_pattern: /],
      ["stripe.com/v1/balance/b_8", /^resource_pattern: .* has no wildcard and is not the call's resource/],
    ];
    for (const [pattern, message] of cases) {
      const r = await ask(pattern);
      expect(r.status, pattern).toBe(400);
      expect(r.body.error.message).toMatch(message);
    }
  });

  test("Slack, Telegram, the dashboard, A2A and the API show what the grant allows besides the denied call", async () => {
    // History: the project's calls named other charges (and other things the glob does not match).
    expect((await read(bot, `${CHARGES}/ch_2`)).decision).toBe("DENY");
    expect((await read(helper, `${CHARGES}/ch_3`)).decision).toBe("DENY");
    // An agent-made resource that tries to pass for more lines of the card.
    expect((await read(helper, `${CHARGES}/ch_4\n• Forged fact`)).decision).toBe("DENY");
    expect((await read(helper, "stripe.com/v1/customers/cu_1", "stripe:customers:read")).decision).toBe(
      "ALLOW",
    );
    const denied = await read(bot, `${CHARGES}/ch_1`);

    const client = await a2aClient(s.url, bot);
    const task = (await client.sendMessage(
      ask({
        denial_event_id: denied.event_id,
        resource_pattern: `${CHARGES}/*`,
        ttl: "PT2H",
        reason: "monthly report <b>all charges</b>",
      }),
    )) as Task;
    expect(task.status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
    // The agent is told what it would get, never other agents' resources.
    expect(statusText(task)).toContain(`What the grant would allow: ${PATTERN_FACTS.join("; ")}`);
    expect(statusText(task)).not.toContain("ch_3");
    const id = task.metadata!.butler.request_id as string;

    const api = await s.http("GET", `/v1/access-requests/${id}`, jordan);
    expect(api.status).toBe(200);
    expect(api.body.resource_pattern).toBe(`${CHARGES}/*`);
    expect(api.body.blast_radius).toMatchObject({
      resource: `${CHARGES}/*`,
      pattern: true,
      seen: { days: 30, count: 3 },
      facts: PATTERN_FACTS,
    });
    expect(api.body.blast_radius.seen.sample).toHaveLength(3);
    const own = await s.http("GET", `/v1/access-requests/${id}`, bot);
    expect(own.body.blast_radius.seen).toBeNull();
    expect(JSON.stringify(own.body)).not.toContain("ch_3");
    expect(api.body.proposal.diff).toContain(`resources: ["${CHARGES}/*"]`);

    await whenAll([slack, telegram], () => !!slack.cardFor(id) && !!telegram.cardFor(id), "cards");
    const slackText = JSON.stringify(slack.cardFor(id)!.blocks);
    for (const f of CARD_FACTS) expect(slackText).toContain(JSON.stringify(`• ${f}`).slice(1, -1));
    expect(slackText).toContain(`(the grant asks for ${CHARGES}/*)`);
    const tg = telegram.cardFor(id)!.text;
    expect(tg).toContain("If approved, the grant allows:");
    for (const f of CARD_FACTS) expect(tg).toContain(`• ${f.replaceAll("&", "&amp;")}`);
    expect(tg).not.toContain("\n• Forged");

    const cookie = await s.dashboardCookie(jordan);
    const page = await (await fetch(`${s.url}/dashboard/requests/${id}`, { headers: { cookie } })).text();
    expect(page).toContain("If approved, the grant allows");
    for (const f of CARD_FACTS) expect(page).toContain(`<li>${f.replaceAll("'", "&#39;")}</li>`);

    // Approved, the grant names the pattern: another charge is allowed, a refund is not.
    const ok = await s.http("POST", `/v1/access-requests/${id}/approve`, jordan, {});
    expect(ok.status).toBe(200);
    expect((await read(bot, `${CHARGES}/ch_77`)).decision).toBe("ALLOW");
    expect((await read(bot, `${CHARGES}`)).decision).toBe("DENY");
    expect((await read(helper, `${CHARGES}/ch_77`)).decision).toBe("DENY");
    const done = (await client.getTask({ id: task.id, tenant: "", historyLength: 0 })) as Task;
    expect(grantOf(done)).toMatchObject({ resource: `${CHARGES}/ch_1`, resource_pattern: `${CHARGES}/*` });
    const grants = await s.http("GET", "/v1/grants?project=shop", jordan);
    expect(grants.body.grants[0]).toMatchObject({ id, resource_pattern: `${CHARGES}/*` });
  });

  test("the proposal counts exactly the agent's past denials the grant would have allowed, and none of the refusals it would not", async () => {
    const payout = await s.agentToken("payout-bot", "payouts");
    const other = await s.agentToken("other-bot", "payouts");
    const refund = (token: string, resource: string, amount?: number) =>
      s.authorize(token, {
        action: "stripe:refunds:create",
        resource,
        ...(amount === undefined ? {} : { params: { amount } }),
      });
    const SMALL = "stripe.com/v1/refunds/small";
    const BIG = "stripe.com/v1/refunds/big";
    const seeded = [
      await refund(payout, SMALL), // resource_not_covered: the grant would allow these three
      await refund(payout, SMALL),
      await refund(payout, BIG, 500), // constraint_failed on another resource: not this grant's
      await refund(payout, BIG, 900),
      await refund(payout, BIG, 50), // allowed
      await refund(other, SMALL), // another agent: not this grant's
      await refund(payout, "stripe.com/v1/refunds/else"),
    ];
    expect(seeded.map((r) => r.body.code ?? r.body.decision)).toEqual([
      "resource_not_covered",
      "resource_not_covered",
      "constraint_failed",
      "constraint_failed",
      "ALLOW",
      "resource_not_covered",
      "resource_not_covered",
    ]);
    const last = await refund(payout, SMALL);
    const filed = await s.http("POST", "/v1/access-requests", payout, {
      denial_event_id: last.body.event_id,
      reason: "refund the small order",
    });
    expect(filed.status).toBe(201);
    const history = filed.body.access_request.blast_radius.history;
    expect(history).toEqual({
      days: 30,
      allowed_calls: 3,
      distinct: 1,
      refusals_lifted: 0,
      undetermined: 0,
      examples: [
        {
          event_id: last.body.event_id,
          resource: SMALL,
          code: "resource_not_covered",
          count: 3,
          at: expect.any(String),
        },
      ],
    });
    expect(filed.body.access_request.blast_radius.facts.at(-1)).toBe(
      `In the last 30 days it would have allowed 3 of payout-bot's denied calls (${SMALL} ×3); none was refused by a parameter constraint or deny pattern`,
    );
    const cookie = await s.dashboardCookie(jordan);
    const id = filed.body.access_request.id;
    const page = await (await fetch(`${s.url}/dashboard/requests/${id}`, { headers: { cookie } })).text();
    expect(page).toContain(
      `<a href="/dashboard/audit?event=${last.body.event_id}">${last.body.event_id}</a>`,
    );
  });
});
