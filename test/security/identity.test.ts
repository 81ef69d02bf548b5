import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { rowsOf } from "../../src/db/client.js";
import { policyRevisions } from "../../src/db/schema.js";
import { sha256 } from "../../src/hash.js";
import { FakeSlack } from "../fakes/fake-slack.js";
import { FakeTelegram } from "../fakes/fake-telegram.js";
import {
  chatEnv,
  postSlack,
  postTelegram,
  slackButton,
  telegramButton,
  telegramMessage,
} from "../helpers/chat.js";
import { ENGINE } from "../helpers/db.js";
import { seedText } from "../helpers/policy.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

/**
 * Identity, as an attacker in another project would try it: approver ids are people, defined
 * once across every policy file. A Telegram or Slack account, or a token, that another project's
 * file binds to "jordan" must never decide project-billing's requests as project-billing's jordan.
 */

const SIGNING_SECRET = "slack-signing-secret-for-identity";
const TG_SECRET = "tg-identity-secret_1";

// project-billing's jordan: known by name only, decides through the dashboard and the API.
const BILLING = seedText().replace(
  "  - id: jordan\n    name: Jordan\n",
  "  - id: jordan\n    name: Jordan\n  - id: sam\n    name: Sam\n    telegram: { user_id: 7100 }\n",
);

// Another team's file binds "their" jordan to accounts the billing team never named.
const PROJECT_B = `project: project-b
agents: [b-bot]
approvers:
  - id: jordan
    name: Jordan B
    slack: { user_id: U0MALLORY }
    telegram: { user_id: 6660 }
`;

describe(`one person per approver id, across projects (${ENGINE})`, () => {
  const slack = new FakeSlack();
  const telegram = new FakeTelegram();
  let s: TestServer;
  let agent: string;

  beforeAll(async () => {
    await slack.start();
    await telegram.start();
    slack.users.set("U0MALLORY", { email: "mallory@example.com", name: "mallory" });
    s = await startTestServer({
      policies: { "project-billing.yaml": BILLING },
      env: chatEnv(slack, telegram, { slack: SIGNING_SECRET, telegram: TG_SECRET }),
    });
    agent = await s.agentToken("billing-reconciler-1", "project-billing");
  });
  afterAll(async () => {
    await s?.cleanup();
    await slack.stop();
    await telegram.stop();
  });

  async function file(resource: string): Promise<string> {
    const r = await s.http("POST", "/v1/access-requests", agent, {
      action: "stripe:charges:read",
      resource,
      ttl: "PT1H",
      reason: "reconcile",
    });
    expect(r.status).toBe(201);
    return r.body.access_request.id as string;
  }

  async function status(id: string): Promise<string> {
    return (await s.http("GET", `/v1/access-requests/${id}`, agent)).body.status;
  }

  const telegramPress = (requestId: string, fromId: number) =>
    postTelegram(s.url, telegramButton(`ap:${requestId}`, fromId), TG_SECRET);
  /** Presses Approve in Slack and waits for the private answer: Bolt acks before it acts. */
  const slackPress = async (requestId: string, userId: string) => {
    const before = slack.calledWith("chat.postEphemeral").length;
    const r = await postSlack(
      s.url,
      slackButton(
        userId,
        { actionId: "butler_approve", value: requestId },
        undefined,
        `${slack.url}/response`,
      ),
      SIGNING_SECRET,
    );
    if (r.status === 200) {
      await slack.next(
        () => slack.calledWith("chat.postEphemeral").length > before,
        "Slack's private answer",
      );
      expect(slack.calledWith("chat.postEphemeral").at(-1)!.args.user).toBe(userId);
    }
    return r.status;
  };

  test("policy validate refuses two files that define one approver id differently, at file:line:col in both", async () => {
    await s.writePolicy("project-b.yaml", PROJECT_B);
    const r = await s.cli(["policy", "validate", s.policiesDir]);
    expect(r.code).toBe(1);
    const out = r.stdout + r.stderr;
    expect(out).toMatch(
      /project-b\.yaml:4:9: approvers\[0\]\.id: approver 'jordan' is defined differently in .*project-billing\.yaml:\d+:\d+/,
    );
    expect(out).toMatch(
      /project-billing\.yaml:\d+:\d+: approvers\[0\]\.id: approver 'jordan' is defined differently in .*project-b\.yaml:4:9/,
    );
  });

  test("a reload with the conflicting file loads neither change; the billing policy keeps serving", async () => {
    const r = await s.cli(["policy", "reload", "--json"]);
    const report = JSON.parse(r.stdout);
    expect(report.failed.map((f: { file: string }) => f.file).join(" ")).toContain("project-b.yaml");
    expect(report.loaded.map((l: { project: string }) => l.project)).not.toContain("project-b");
    const token = await s.agentToken("billing-reconciler-1", "project-billing");
    expect(
      (await s.authorize(token, { action: "aws:s3:GetObject", resource: "arn:aws:s3:::ledger-internal/x" }))
        .body.decision,
    ).toBe("ALLOW");
  });

  test("the refused file's Telegram and Slack accounts are nobody's: they cannot approve a billing request", async () => {
    const id = await file("stripe.com/v1/charges/ch_tg");
    expect(await telegramPress(id, 6660)).toBe(200);
    expect(await slackPress(id, "U0MALLORY")).toBe(200);
    expect(await status(id)).toBe("pending");
    const refused = (await s.events("access_request.review_refused")).filter((e) => e.request_id === id);
    expect(refused.map((e) => e.approver)).toEqual(["telegram:6660", "slack:U0MALLORY"]);
  });

  describe("when conflicting definitions are already in force (stored by an older Butler)", () => {
    let id: string;

    beforeAll(async () => {
      // As a revision stored before this check existed: the index then holds both definitions.
      const db = s.server.services.database.db;
      await db.insert(policyRevisions).values({
        project: "project-b",
        revision: 1,
        contentHash: sha256(PROJECT_B),
        source: "file:/legacy/project-b.yaml",
        yaml: PROJECT_B,
        baseline: PROJECT_B,
        effectiveHash: sha256(PROJECT_B),
      });
      await s.server.services.policies.refreshAll();
      expect(s.server.services.policies.index().projects.has("project-b")).toBe(true);
      id = await file("stripe.com/v1/charges/ch_legacy");
    });

    test("chat accounts of a person the files disagree on decide nothing", async () => {
      expect(await telegramPress(id, 6660)).toBe(200);
      expect(await slackPress(id, "U0MALLORY")).toBe(200);
      expect(await status(id)).toBe("pending");
      // Refused because the files disagree on who jordan is, not for want of an account.
      const refused = (await s.events("access_request.review_refused")).filter((e) => e.request_id === id);
      expect(refused.map((e) => e.reason)).toEqual([
        "telegram:6660 is claimed by more than one approver (jordan) or by one the policy files disagree on",
        "slack:U0MALLORY is claimed by more than one approver (jordan) or by one the policy files disagree on",
      ]);
    });

    test("jordan's token decides nothing anywhere until the files agree", async () => {
      const token = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
      const r = await s.http("POST", `/v1/access-requests/${id}/approve`, token, {});
      expect(r.status).toBe(403);
      expect(r.body.error.message).toContain("define approver 'jordan' differently");
      expect(await status(id)).toBe("pending");
    });
  });

  test("an account a policy names for one person cannot be linked to another", async () => {
    // 7100 is sam's in project-billing; a link code made for jordan must not bind it to jordan.
    const link = await s.cli(["approvers", "link", "jordan", "--telegram", "--json"]);
    const code = new URL(JSON.parse(link.stdout).url).searchParams.get("start")!;
    const status = await postTelegram(s.url, telegramMessage(7100, `/start ${code}`), TG_SECRET);
    expect(status).toBe(200);
    const replies = telegram.calledWith("sendMessage").map((c) => String(c.body.text));
    expect(replies.at(-1)).toContain("belongs to another approver");
    const bindings = rowsOf<{ n: number }>(
      await s.server.services.database.db.execute(
        sql`SELECT count(*)::int AS n FROM chat_bindings WHERE user_id = '7100'`,
      ),
    );
    expect(bindings[0]!.n).toBe(0);
  });
});

describe(`a project's approver listed by id only is never given accounts by another project's file (${ENGINE})`, () => {
  const telegram = new FakeTelegram();
  let s: TestServer;

  // project-billing trusts jordan by id (tokens, the dashboard); project-b writes jordan's accounts.
  const BILLING_BY_ID = seedText().replace("  - id: jordan\n    name: Jordan\n", "  - id: jordan\n");

  beforeAll(async () => {
    await telegram.start();
    s = await startTestServer({
      policies: { "project-billing.yaml": BILLING_BY_ID, "project-b.yaml": PROJECT_B },
      env: chatEnv(undefined, telegram, { telegram: TG_SECRET }),
    });
  });
  afterAll(async () => {
    await s?.cleanup();
    await telegram.stop();
  });

  const press = (requestId: string, fromId: number) =>
    postTelegram(s.url, telegramButton(`ap:${requestId}`, fromId), TG_SECRET);

  async function file(token: string, resource: string): Promise<string> {
    const r = await s.http("POST", "/v1/access-requests", token, {
      action: "stripe:charges:read",
      resource,
      reason: "by id",
    });
    expect(r.status).toBe(201);
    return r.body.access_request.id;
  }

  test("the account project-b names for jordan approves project-b's requests, not project-billing's", async () => {
    const billingAgent = await s.agentToken("billing-reconciler-1", "project-billing");
    const bAgent = await s.agentToken("b-bot", "project-b");
    const billing = await file(billingAgent, "stripe.com/v1/charges/ch_by_id");
    const other = await file(bAgent, "stripe.com/v1/charges/ch_b");
    expect(await press(billing, 6660)).toBe(200);
    expect((await s.http("GET", `/v1/access-requests/${billing}`, billingAgent)).body.status).toBe("pending");
    expect(await press(other, 6660)).toBe(200);
    expect((await s.http("GET", `/v1/access-requests/${other}`, bAgent)).body.status).toBe("approved");
    // Nor does project-billing's card go to that account.
    await s.server.services.outbox.drain();
    expect(telegram.cardFor(billing)).toBeUndefined();
  });
});

describe(`an agent never approves its own request (${ENGINE})`, () => {
  test("policy validate refuses an approver id that is an agent of the same project", async () => {
    const self = `project: solo
agents: [robo]
approvers:
  - id: robo
`;
    const s = await startTestServer({ policies: { "solo.yaml": seedText() } });
    try {
      await s.writePolicy("solo.yaml", self);
      const r = await s.cli(["policy", "validate", s.policiesDir]);
      expect(r.code).toBe(1);
      expect(r.stdout + r.stderr).toMatch(
        /solo\.yaml:4:9: approvers\[0\]\.id: approver 'robo' has the name of an agent of this project/,
      );
    } finally {
      await s.cleanup();
    }
  });

  test("a revision in force that names the agent as approver still cannot let it approve itself", async () => {
    const self = `project: solo
agents: [robo]
approvers:
  - id: robo
  - id: human
`;
    const s = await startTestServer({ policies: { "project-billing.yaml": seedText() } });
    try {
      await s.server.services.database.db.insert(policyRevisions).values({
        project: "solo",
        revision: 1,
        contentHash: sha256(self),
        source: "file:/legacy/solo.yaml",
        yaml: self,
        baseline: self,
        effectiveHash: sha256(self),
      });
      await s.server.services.policies.refreshAll();
      const agent = await s.agentToken("robo", "solo");
      const filed = await s.http("POST", "/v1/access-requests", agent, {
        action: "stripe:charges:read",
        resource: "stripe.com/v1/charges/ch_self",
        reason: "self",
      });
      expect(filed.status).toBe(201);
      const id = filed.body.access_request.id;
      const token = JSON.parse((await s.cli(["approvers", "token", "robo", "--json"])).stdout).token;
      const r = await s.http("POST", `/v1/access-requests/${id}/approve`, token, {});
      expect(r.status).toBe(403);
      expect(r.body.error.message).toContain("never decides its own request");
      expect((await s.http("GET", `/v1/access-requests/${id}`, agent)).body.status).toBe("pending");
    } finally {
      await s.cleanup();
    }
  });
});
