import { createHmac } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { FakeSlack } from "../fakes/fake-slack.js";
import { FakeTelegram } from "../fakes/fake-telegram.js";
import { postRevolutEvent } from "../fixtures/treasury.js";
import {
  chatEnv,
  postSlackRaw,
  postTelegram,
  slackButton,
  slackSigned,
  telegramButton,
} from "../helpers/chat.js";
import { FakeClock } from "../helpers/clock.js";
import { ENGINE } from "../helpers/db.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const WEBHOOKS = `webhooks:
  scheme: revolut
  secret: REVOLUT_WEBHOOK_SECRET
  subject:
    events: [TransactionCreated]
    resource: "revolut.com/cards/{data.card_id}"
    merchant_category: data.merchant.category_code
    amount: { field: data.amount, currency_field: data.currency }
  reactions:
    - name: freeze_on_major_drift
      when: { event: TransactionCreated, drift: major }
      call: { operation: freeze_card, params: { card_id: "{data.card_id}" } }
      actor: { project: procurement, agent: butler-reactions }
`;

const policy = (webhookPort: number) => `project: procurement
agents: [procurement-agent, butler-reactions]
grants:
  - service: revolut
    actions: [cards:freeze]
    agents: [butler-reactions]
  - service: revolut
    actions: [cards:topup]
    agents: [procurement-agent]
pacts:
  - agent: procurement-agent
    purpose: buys software licences and telecom services with its card
    allowed_merchant_categories: ["5734", "4816"]
    expected_monthly_budget: { amount: 300000, currency: EUR }
    resources: [revolut.com/cards/card_9]
trust: { initial: 800 }
approvers:
  - id: jordan
    slack: { user_id: U0JORDAN }
    telegram: { user_id: 7001 }
security:
  slack: [C0SECURITY]
  telegram: ["-1009"]
  webhook_url: http://127.0.0.1:${webhookPort}/alerts
  webhook_secret: SECURITY_WEBHOOK_SECRET
`;

/** A money-moving operation of this fixture's Revolut (no approval per call). */
const TOP_UP = `  - name: top_up_card
    op_group: write
    method: POST
    endpoint: /cards/{card_id}/top-up
    action: revolut:cards:topup
    resource: revolut.com/cards/{card_id}
    amount: { field: amount, currency_field: currency }
`;

/** Another project, whose approver is not one of procurement's. */
const ELSEWHERE = `project: elsewhere
agents: [x]
approvers:
  - id: sam
`;

const SLACK_SECRET = "slack-signing";
const TG_SECRET = "tg-secret_1";

/**
 * The seed's third story, end to end over HTTP: a Revolut TransactionCreated at merchant category
 * 7995 breaks the card owner's pact, is major drift of its merchant categories, and the policy
 * freezes the card through the normal pipeline and alerts the security chat and webhook.
 */
describe(`card events as agent behaviour (${ENGINE})`, () => {
  const clock = new FakeClock(Date.parse("2026-11-02T09:00:00Z"));
  const slack = new FakeSlack();
  const telegram = new FakeTelegram();
  const freezes: string[] = [];
  const revolut = createServer((req, res) => {
    freezes.push(`${req.method} ${req.url}`);
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ state: "FROZEN" }));
    });
  });
  const alerts: { headers: Record<string, unknown>; body: string }[] = [];
  let alerted: () => void = () => {};
  const receiver = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => {
      body += c;
    });
    req.on("end", () => {
      alerts.push({ headers: req.headers, body });
      res.writeHead(204).end();
      alerted();
    });
  });
  let dir: string;
  let s: TestServer;
  let txn = 0;

  beforeAll(async () => {
    await slack.start();
    await telegram.start();
    slack.channels.add("C0SECURITY");
    for (const srv of [revolut, receiver]) await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    dir = await mkdtemp(join(tmpdir(), "butler-card-events-"));
    const spec = await readFile(new URL("../../providers/revolut.yaml", import.meta.url), "utf8");
    await writeFile(
      join(dir, "revolut.yaml"),
      spec.replace(/webhooks:\n( {2}.*\n)+/, WEBHOOKS).replace("operations:\n", `operations:\n${TOP_UP}`),
    );
    s = await startTestServer({
      clock,
      policies: {
        "procurement.yaml": policy((receiver.address() as AddressInfo).port),
        "elsewhere.yaml": ELSEWHERE,
      },
      env: {
        ...chatEnv(slack, telegram, { slack: SLACK_SECRET, telegram: TG_SECRET }),
        PROVIDERS_DIR: dir,
        BUTLER_PROVIDER_URLS: `revolut=http://127.0.0.1:${(revolut.address() as AddressInfo).port}`,
        REVOLUT_ACCESS_TOKEN: "revolut-access",
        REVOLUT_WEBHOOK_SECRET: "revolut-signing",
        SECURITY_WEBHOOK_SECRET: "alert-signing-key",
      },
    });
  });
  afterAll(async () => {
    await s?.cleanup();
    await slack.stop();
    await telegram.stop();
    for (const srv of [revolut, receiver]) await new Promise<void>((r) => srv.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  });

  /** A signed TransactionCreated (or another event) for card_9 at merchant category `mcc`. */
  async function payment(mcc: string, amount = 4999, event = "TransactionCreated") {
    const body = JSON.stringify({
      event,
      timestamp: clock.now().toISOString(),
      data: {
        id: `txn_${++txn}`,
        card_id: "card_9",
        amount,
        currency: "EUR",
        merchant: { category_code: mcc, name: mcc === "7995" ? "<b>Casino</b> @here" : "Licences Inc" },
      },
    });
    const res = await postRevolutEvent(s.url, body, "revolut-signing", clock.now().getTime());
    expect(res.status).toBe(200);
    return res.body as { reactions: { name: string; status: number }[] };
  }

  test("a payment at MCC 7995 breaks the pact, is major drift, freezes the card and alerts the security room", async () => {
    // Two weeks of ordinary use: 25 payments at software stores.
    for (let i = 0; i < 25; i++) {
      expect((await payment("5734")).reactions).toEqual([]);
      clock.advance(3600_000);
    }
    clock.advance(2 * 24 * 3600_000);
    // Still ordinary: no violation, no drift, nothing frozen, no alert.
    expect((await payment("5734")).reactions).toEqual([]);
    expect(freezes).toEqual([]);
    expect(await s.events("pact.violated")).toEqual([]);
    expect(await s.events("security.alert")).toEqual([]);

    // Another kind of event about the card is not a payment (webhooks.subject.events): not counted.
    expect((await payment("7995", 25000, "TransactionStateChanged")).reactions).toEqual([]);
    expect(await s.events("pact.violated")).toEqual([]);

    const webhookArrived = new Promise<void>((r) => {
      alerted = r;
    });
    const answer = await payment("7995", 25000);
    expect(answer.reactions).toEqual([{ name: "freeze_on_major_drift", status: 200 }]);
    expect(freezes).toEqual(["POST /cards/card_9/freeze"]);

    const [violation] = await s.events("pact.violated");
    expect(violation).toMatchObject({
      agent: "procurement-agent",
      project: "procurement",
      resource: "revolut.com/cards/card_9",
      source: "webhook",
      violations: [
        { rule: "allowed_merchant_categories", actual: "merchant category 7995", expected: "5734, 4816" },
      ],
    });
    const drift = (await s.events("drift.detected")).filter((e) => e.dimension === "merchant_category");
    expect(drift).toHaveLength(1);
    expect(drift[0]).toMatchObject({
      agent: "procurement-agent",
      level: "major",
      new_values: ["7995"],
      // The two weeks before, and the last day: one ordinary payment and this one.
      baseline_calls: 25,
      recent_calls: 2,
      jaccard: 0.5,
    });
    const trust = await s.events("trust.changed");
    expect(trust.map((t) => [t.cause, t.before, t.after])).toEqual([["webhook_incident", 800, 700]]);
    // The freeze went through the pipeline as the reactions' agent, allowed by its grant.
    const [freeze] = await s.events("gateway.allowed");
    expect(freeze).toMatchObject({ agent: "butler-reactions", action: "revolut:cards:freeze" });

    const [alert] = await s.events("security.alert");
    expect(alert).toMatchObject({
      agent: "procurement-agent",
      project: "procurement",
      kind: "pact_violation",
    });
    expect(alert!.event_ids).toEqual(expect.arrayContaining([violation!.event_id, freeze!.event_id]));

    // The security room in Slack and Telegram, and the outgoing webhook, signed.
    await slack.next(
      () => [...slack.messages.values()].some((m) => m.channel === "C0SECURITY"),
      "slack alert",
    );
    const inSlack = [...slack.messages.values()].find((m) => m.channel === "C0SECURITY")!;
    const slackText = JSON.stringify(inSlack.blocks);
    expect(slackText).toContain("merchant category 7995");
    expect(slackText).toContain("reaction freeze_on_major_drift: revolut freeze_card answered 200");
    expect(slackText).toContain("trust score now 700");
    await telegram.next(
      () => [...telegram.messages.values()].some((m) => m.chatId === "-1009"),
      "telegram alert",
    );
    const inTelegram = [...telegram.messages.values()].find((m) => m.chatId === "-1009")!;
    expect(inTelegram.text).toContain("merchant-category drift: major (new: 7995)");
    await webhookArrived;
    const sent = alerts[0]!;
    const [t, v1] = String(sent.headers["butler-signature"]).split(",");
    const expected = createHmac("sha256", "alert-signing-key")
      .update(`butler-security-alert.${t!.slice(2)}.${sent.body}`)
      .digest("hex");
    expect(v1).toBe(`v1=${expected}`);
    expect(JSON.parse(sent.body)).toMatchObject({
      type: "security.alert",
      kind: "pact_violation",
      agent: "procurement-agent",
      alert_id: alert!.alert_id,
    });

    // The next ordinary payment shows no drift of its own: nothing is frozen again, no new alert.
    expect((await payment("5734")).reactions).toEqual([]);
    expect(freezes).toHaveLength(1);
    expect(await s.events("security.alert")).toHaveLength(1);

    // The agent's health shows it.
    const shown = JSON.parse(
      (await s.cli(["agents", "show", "procurement-agent", "--project", "procurement", "--json"])).stdout,
    );
    expect(shown.trust).toBe(700);
    expect(shown.health).toBe(90);
    expect(shown.recent_violations).toEqual([expect.objectContaining({ event_id: violation!.event_id })]);
    expect(shown.drift).toEqual(
      expect.arrayContaining([expect.objectContaining({ dimension: "merchant_category", level: "major" })]),
    );
  });

  test("the alert's buttons: acknowledge once, restore trust (approvers only), suspend the agent's grants", async () => {
    const [alert] = await s.events("security.alert");
    const alertId = alert!.alert_id as string;
    const inSlack = [...slack.messages.values()].find((m) => m.channel === "C0SECURITY")!;
    const press = (user: string, actionId: string) => {
      const payload = slackButton(
        user,
        { actionId, value: alertId },
        { ts: inSlack.ts, channel: "C0SECURITY" },
      );
      // Signed at the server's (fake) time.
      const at = Math.floor(clock.now().getTime() / 1000);
      const body = `payload=${encodeURIComponent(JSON.stringify(payload))}`;
      return postSlackRaw(s.url, body, SLACK_SECRET, undefined, slackSigned(body, SLACK_SECRET, at));
    };
    slack.users.set("U0JORDAN", { email: "jordan@example.com", name: "jordan" });
    expect((await press("U0JORDAN", "butler_alert_ack")).status).toBe(200);
    await slack.next(() => inSlack.replies.some((r) => r.includes("acknowledged")), "the thread reply");
    expect(inSlack.replies).toContain("jordan acknowledged; procurement-agent is unchanged.");
    const [ack] = await s.events("security.acknowledged");
    expect(ack).toMatchObject({ alert_id: alertId, by: "jordan", agent: "procurement-agent" });
    // A second press takes nothing: the presser is told who did.
    await press("U0JORDAN", "butler_alert_ack");
    await slack.next(
      () =>
        slack.calledWith("chat.postEphemeral").some((c) => /jordan already acknowledged/.test(c.args.text)),
      "the private answer",
    );
    expect(await s.events("security.acknowledged")).toHaveLength(1);

    // Telegram: someone who is not an approver of the project is refused and audited.
    const inTelegram = [...telegram.messages.values()].find((m) => m.chatId === "-1009")!;
    expect(inTelegram.keyboard?.[0]?.map((b) => b.callback_data)).toEqual([
      `sa:${alertId}`,
      `ss:${alertId}`,
      `st:${alertId}`,
    ]);
    await postTelegram(s.url, telegramButton(`st:${alertId}`, 7999, inTelegram.messageId), TG_SECRET);
    const [refused] = await s.events("security.action_refused");
    expect(refused).toMatchObject({ alert_id: alertId, alert_action: "restore_trust" });
    // Nor is an approver of another project, whose Telegram account was linked to them.
    const { chatBindings } = await import("../../src/db/schema.js");
    await s.server.services.database.db
      .insert(chatBindings)
      .values({ channel: "telegram", userId: "7005", approver: "sam" });
    await postTelegram(s.url, telegramButton(`st:${alertId}`, 7005, inTelegram.messageId), TG_SECRET);
    expect((await s.events("security.action_refused")).map((l) => l.approver)).toEqual([
      "telegram:7999",
      "sam",
    ]);
    expect((await s.events("trust.changed")).map((t) => t.cause)).toEqual(["webhook_incident"]);
    // The approver restores the agent's trust score to the project's initial.
    await postTelegram(s.url, telegramButton(`st:${alertId}`, 7001, inTelegram.messageId), TG_SECRET);
    const restored = (await s.events("trust.changed")).filter((t) => t.cause === "restored");
    expect(restored).toEqual([
      expect.objectContaining({ before: 700, after: 800, restored_by: "jordan", alert_id: alertId }),
    ]);

    // A grant the agent got through an access request, revoked by a person: an incident.
    const agent = await s.agentToken("procurement-agent", "procurement");
    const call = { action: "revolut:transactions:read", resource: "revolut.com/transactions" };
    const jordan = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
    const granted = async () => {
      const denied = await s.authorize(agent, call);
      expect(denied.body.decision).toBe("DENY");
      const filed = await s.http("POST", "/v1/access-requests", agent, {
        ...call,
        ttl: "PT1H",
        reason: "reconcile",
        denial_event_id: denied.body.event_id,
      });
      expect(filed.status).toBe(201);
      const id = filed.body.access_request.id;
      expect((await s.http("POST", `/v1/access-requests/${id}/approve`, jordan, {})).status).toBe(200);
      expect((await s.authorize(agent, call)).body.decision).toBe("ALLOW");
      return (await s.events("grant.applied")).at(-1)!.grant_id as string;
    };
    const first = await granted();
    expect((await s.cli(["grants", "revoke", first, "--reason", "not needed"])).code).toBe(0);
    const [revokedLine] = await s.events("grant.revoked");
    expect((await s.events("trust.changed")).filter((t) => t.cause === "grant_revoked")).toEqual([
      expect.objectContaining({ before: 800, after: 750, incident_event_id: revokedLine!.event_id }),
    ]);

    // Then "suspend grants": the next one revoked at once, as one act (no incident per grant).
    await granted();
    expect((await press("U0JORDAN", "butler_alert_suspend")).status).toBe(200);
    await slack.next(() => inSlack.replies.some((r) => r.includes("suspended")), "the thread reply");
    const [suspended] = await s.events("security.agent_suspended");
    expect(suspended).toMatchObject({ alert_id: alertId, by: "jordan" });
    expect(suspended!.revoked_grants).toHaveLength(1);
    expect((await s.authorize(agent, call)).body.decision).toBe("DENY");
    expect((await s.events("trust.changed")).filter((t) => t.cause === "grant_revoked")).toHaveLength(1);
  });

  test("spend running ahead of the pact's monthly expectation is flagged once, when it crosses the line", async () => {
    const agent = await s.agentToken("procurement-agent", "procurement");
    const topUp = async (amount: number, key?: string) => {
      const res = await fetch(`${s.url}/v1/providers/revolut/operations/top_up_card`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${agent}`,
          "content-type": "application/json",
          ...(key ? { "idempotency-key": key } : {}),
        },
        body: JSON.stringify({ params: { card_id: "card_9", amount, currency: "EUR" } }),
      });
      await res.arrayBuffer();
      return { status: res.status };
    };
    const now = clock.now();
    const days = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 0)).getUTCDate();
    const allowed = Math.ceil((300000 * now.getUTCDate()) / days);
    const spendLines = async () => (await s.events("pact.violated")).filter((l) => l.source === "spend");
    expect((await topUp(allowed - 1000, "top-up-1")).status).toBe(200);
    // The agent's retry with the same key: the provider answers again, the money moved once.
    expect((await topUp(allowed - 1000, "top-up-1")).status).toBe(200);
    expect(await spendLines()).toEqual([]);
    expect((await topUp(2000)).status).toBe(200);
    const [v] = await spendLines();
    expect(v).toMatchObject({
      agent: "procurement-agent",
      mode: "flag",
      violations: [
        {
          rule: "expected_monthly_budget",
          actual: `${allowed + 1000} EUR this month by day ${now.getUTCDate()} of ${days}`,
          expected: `300000 EUR a month, ${allowed} by today`,
        },
      ],
    });
    // Past the line already: not flagged again; counted as an incident once.
    expect((await topUp(500)).status).toBe(200);
    expect(await spendLines()).toHaveLength(1);
    const flagged = (await s.events("trust.changed")).filter((t) => t.cause === "pact_violation_flagged");
    expect(flagged).toEqual([expect.objectContaining({ incident_event_id: v!.event_id })]);

    // Another payment at the category that was new: it breaks the pact again, but shows no drift
    // of its own, so the card (unfrozen by a person after review, say) is not frozen again.
    expect((await payment("7995")).reactions).toEqual([]);
    expect(freezes.filter((r) => r.endsWith("/freeze"))).toHaveLength(1);
    expect((await s.events("pact.violated")).filter((l) => l.source === "webhook")).toHaveLength(2);
  });
});
