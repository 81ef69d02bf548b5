import { sql } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { readLines } from "../../src/audit/audit-log.js";
import { verifyAuditChain } from "../../src/audit/verify.js";
import { rowsOf } from "../../src/db/client.js";
import type { Services } from "../../src/services.js";
import { FakeChannel } from "../fakes/fake-channel.js";
import { FakeNotifier } from "../fakes/fake-notifier.js";
import { FakeClock } from "../helpers/clock.js";
import { createTestDatabase, ENGINE, type TestDatabase } from "../helpers/db.js";
import { createTestEnv, type TestEnv } from "../helpers/server.js";
import { agentIdentity, startServices, stopServices } from "../helpers/services.js";

const POLICY = `project: ops
agents: [deployer, other-agent]
grants:
  - service: aws
    actions: [s3:GetObject]
    resources: ["arn:aws:s3:::ops/*"]
approvers:
  - id: a1
  - id: a2
  - id: a3
  - id: a4
  - id: a5
  - id: reader-only
    tiers: [low]
settings:
  grant_ttl: { default: PT1H, max: PT8H }
  pending_ttl: PT2H
  never_grant: ["aws:iam:*"]
`;
const OTHER = `project: elsewhere
agents: [x]
approvers:
  - id: outsider
`;

describe(`Butler decisions (${ENGINE})`, () => {
  const clock = new FakeClock("2026-05-01T10:00:00Z");
  let t: TestDatabase;
  let env: TestEnv;
  let s: Services;
  const deployer = agentIdentity("deployer", "ops");

  beforeAll(async () => {
    t = await createTestDatabase();
    env = await createTestEnv({ policies: { "ops.yaml": POLICY, "elsewhere.yaml": OTHER } });
    s = await startServices({ database: t.database, policiesDir: env.policiesDir, clock });
    await s.policies.importDirectory("test");
  });
  afterAll(async () => {
    await stopServices(s);
    await t?.cleanup();
    await env?.cleanup();
  });

  async function file(action: string, resource: string, ttl = "PT1H") {
    const r = await s.butler.submit(deployer, { action, resource, ttl, reason: "deploy" });
    if (r.status === "already_allowed") throw new Error("already allowed");
    return r.request;
  }

  async function decisionEvents(requestId: string) {
    const out = [];
    for await (const l of readLines(t.database.db)) {
      if (
        (l as Record<string, unknown>).request_id === requestId &&
        /^access_request\.(approved|denied)$/.test(l.type)
      )
        out.push(l);
    }
    return out;
  }

  test("20 simultaneous approve and deny presses: one final state, at most one grant, one decision event", async () => {
    const r = await file("aws:s3:PutObject", "arn:aws:s3:::ops/release.tar");
    expect(r.approvals_required).toBe(1);
    const approvers = ["a1", "a2", "a3", "a4", "a5"];
    const presses = Array.from({ length: 20 }, (_, i) =>
      s.butler.review({ approver: approvers[i % 5]!, channel: "api" }, r.id, i % 2 ? "deny" : "approve").then(
        (x) => x.outcome,
        (e: Error) => `error: ${e.message}`,
      ),
    );
    const outcomes = await Promise.all(presses);
    const finals = outcomes.filter((o) => o === "approved" || o === "denied");
    expect(finals).toHaveLength(1);
    const final = await s.butler.get(r.id);
    expect(final.status).toBe(finals[0]);
    const grants = rowsOf<{ n: number | string }>(
      await t.database.db.execute(sql`SELECT count(*) AS n FROM grants WHERE id = ${r.id}`),
    );
    expect(Number(grants[0]!.n)).toBe(final.status === "approved" ? 1 : 0);
    expect(await decisionEvents(r.id)).toHaveLength(1);
    for (const o of outcomes.filter((o) => o !== finals[0]))
      expect(o).toMatch(/unchanged|error: request .* is already (approved|denied) by/);
  });

  test("a high-risk request needs two different people; the same person pressing twice counts once", async () => {
    const r = await file("aws:s3:DeleteObject", "arn:aws:s3:::ops/old.tar");
    expect(r).toMatchObject({ risk_tier: "high", approvals_required: 2 });
    expect((await s.butler.review({ approver: "a1", channel: "api" }, r.id, "approve")).outcome).toBe(
      "recorded",
    );
    expect((await s.butler.review({ approver: "a1", channel: "slack" }, r.id, "approve")).outcome).toBe(
      "unchanged",
    );
    expect((await s.butler.get(r.id)).status).toBe("pending");
    const done = await s.butler.review({ approver: "a2", channel: "telegram" }, r.id, "approve");
    expect(done.outcome).toBe("approved");
    expect(done.request.approvals.map((a) => a.approver)).toEqual(["a1", "a2"]);
  });

  test("the Butler's methods work when passed on as plain functions (no `this`)", async () => {
    const r = await file("aws:s3:PutObject", "arn:aws:s3:::ops/detached");
    const { reviewFromChannel, card } = s.butler;
    const out = await reviewFromChannel({
      requestId: r.id,
      verdict: "deny",
      reason: "detached",
      actor: { channel: "dashboard", userId: "a1" },
    });
    expect(out).toMatchObject({ ok: true, message: "Request denied" });
    expect((await card(r.id)).status).toBe("denied");
  });

  test("an approver limited to low risk, and an approver of another project, cannot decide; both attempts are audited", async () => {
    const r = await file("aws:s3:PutObject", "arn:aws:s3:::ops/x");
    await expect(
      s.butler.review({ approver: "reader-only", channel: "api" }, r.id, "approve"),
    ).rejects.toThrow("you may not decide medium-risk requests of ops");
    await expect(s.butler.review({ approver: "outsider", channel: "api" }, r.id, "approve")).rejects.toThrow(
      "you are not an approver for ops",
    );
    await expect(s.butler.review({ approver: "deployer", channel: "api" }, r.id, "approve")).rejects.toThrow(
      "an agent never decides its own request",
    );
    expect((await s.butler.get(r.id)).status).toBe("pending");
    const refused = [];
    for await (const l of readLines(t.database.db))
      if (l.type === "access_request.review_refused") refused.push((l as Record<string, unknown>).approver);
    expect(refused).toEqual(["reader-only", "outsider", "deployer"]);
  });

  test("an approver may shorten the TTL, not lengthen it; the clock starts at approval", async () => {
    const r = await file("aws:s3:PutObject", "arn:aws:s3:::ops/ttl", "PT4H");
    await expect(
      s.butler.review({ approver: "a1", channel: "api" }, r.id, "approve", { ttl: "PT5H" }),
    ).rejects.toThrow("an approver may shorten the requested PT4H, not lengthen it");
    clock.advance(30 * 60_000);
    const done = await s.butler.review({ approver: "a1", channel: "api" }, r.id, "approve", { ttl: "PT1H" });
    expect(done.request.grant?.expires_at).toBe(new Date(clock.now().getTime() + 3600_000).toISOString());
  });

  test("requests are validated: maximum TTL named, never-grantable actions refused, wildcards need a denial", async () => {
    await expect(
      s.butler.submit(deployer, { action: "aws:s3:PutObject", resource: "r", ttl: "PT9H", reason: "x" }),
    ).rejects.toThrow("ttl: PT9H is longer than the maximum grant TTL of ops (PT8H); ask for at most that");
    await expect(
      s.butler.submit(deployer, { action: "aws:iam:CreateUser", resource: "r", ttl: "PT1H", reason: "x" }),
    ).rejects.toThrow("aws:iam:CreateUser is never granted in ops (settings.never_grant)");
    await expect(
      s.butler.submit(deployer, { action: "aws:s3:*", resource: "r", ttl: "PT1H", reason: "x" }),
    ).rejects.toThrow("name one exact action");
    await expect(
      s.butler.submit(agentIdentity("stranger", "ops"), {
        action: "aws:s3:PutObject",
        resource: "r",
        ttl: "PT1H",
        reason: "x",
      }),
    ).rejects.toThrow("agent stranger is not in project ops");
    const allowed = await s.butler.submit(deployer, {
      action: "aws:s3:GetObject",
      resource: "arn:aws:s3:::ops/a",
      ttl: "PT1H",
      reason: "x",
    });
    expect(allowed).toMatchObject({ status: "already_allowed", grant_id: "g_1" });
  });

  test("a denial event of another agent cannot be used", async () => {
    const other = await s.gateway.authorize(
      { ...agentIdentity("other-agent", "ops"), tokenId: "tok_other000000000" },
      {
        action: "aws:s3:PutObject",
        resource: "arn:aws:s3:::ops/secret",
      },
    );
    expect(other.decision).toBe("DENY");
    await expect(
      s.butler.submit(deployer, { ttl: "PT1H", reason: "x", denial_event_id: other.event_id }),
    ).rejects.toThrow(`no denial ${other.event_id} of agent deployer in ops`);
  });

  test("a pending request expires after the project's pending TTL", async () => {
    const r = await file("aws:s3:PutObject", "arn:aws:s3:::ops/late");
    clock.advance(2 * 3600_000);
    await expect(s.butler.review({ approver: "a1", channel: "api" }, r.id, "approve")).rejects.toThrow(
      "expired",
    );
    expect((await s.butler.get(r.id)).status).toBe("expired");
  });

  test("revoking a grant stops it at once, and the chain still verifies", async () => {
    const r = await file("aws:s3:PutObject", "arn:aws:s3:::ops/revoke-me");
    await s.butler.review({ approver: "a1", channel: "api" }, r.id, "approve");
    const call = { action: "aws:s3:PutObject", resource: "arn:aws:s3:::ops/revoke-me" };
    expect((await s.gateway.authorize(deployer, call)).decision).toBe("ALLOW");
    await s.butler.revokeGrant(r.id, "test", "no longer needed");
    const after = await s.gateway.authorize(deployer, call);
    expect(after.decision).toBe("DENY");
    await expect(s.butler.revokeGrant(r.id, "test")).rejects.toMatchObject({
      code: "GRANT_ENDED",
      message: expect.stringContaining("already revoked"),
    });
    expect(await verifyAuditChain(t.database.db)).toMatchObject({ ok: true });
  });
});

describe(`the outbox survives a crash (${ENGINE})`, () => {
  const clock = new FakeClock("2026-05-01T10:00:00Z");
  let t: TestDatabase;
  let env: TestEnv;
  beforeAll(async () => {
    t = await createTestDatabase();
    env = await createTestEnv({ policies: { "ops.yaml": POLICY } });
  });
  afterAll(async () => {
    await t?.cleanup();
    await env?.cleanup();
  });

  test("a crash between the approval commit and the notification still delivers it after restart, retried with backoff", async () => {
    const before = new FakeNotifier();
    const first = await startServices({
      database: t.database,
      policiesDir: env.policiesDir,
      clock,
      notifier: before,
    });
    await first.policies.importDirectory("test");
    const r = await first.butler.submit(agentIdentity("deployer", "ops"), {
      action: "aws:s3:PutObject",
      resource: "arn:aws:s3:::ops/x",
      ttl: "PT1H",
      reason: "x",
    });
    if (r.status === "already_allowed") throw new Error("unexpected");
    await first.butler.review({ approver: "a1", channel: "api" }, r.request.id, "approve");
    // The process dies here: its outbox worker never ran.
    await stopServices(first);
    expect(before.sent).toEqual([]);

    const after = new FakeNotifier();
    after.failing = true;
    const second = await startServices({
      database: t.database,
      policiesDir: env.policiesDir,
      clock,
      notifier: after,
    });
    try {
      expect(await second.outbox.runOnce()).toBe(1);
      expect(after.sent).toEqual([]);
      // Not due again until its backoff has passed.
      expect(await second.outbox.runOnce()).toBe(0);
      after.failing = false;
      clock.advance(1_000);
      expect(await second.outbox.runOnce()).toBe(1);
      expect(after.sent).toEqual([
        expect.objectContaining({ type: "grant_ready", requestId: r.request.id, grantId: r.request.id }),
      ]);
      expect(await second.outbox.runOnce()).toBe(0);
    } finally {
      await stopServices(second);
    }
  });
});

describe(`buttons pressed on a channel's card (${ENGINE})`, () => {
  const clock = new FakeClock("2026-05-01T10:00:00Z");
  const slack = new FakeChannel("slack");
  let t: TestDatabase;
  let env: TestEnv;
  let s: Services;
  beforeAll(async () => {
    t = await createTestDatabase();
    env = await createTestEnv({
      policies: { "ops.yaml": POLICY.replace("  - id: a1\n", "  - id: a1\n    slack: { user_id: U0A1 }\n") },
    });
    s = await startServices({ database: t.database, policiesDir: env.policiesDir, clock, channels: [slack] });
    await s.policies.importDirectory("test");
    await slack.start((input) => s.butler.reviewFromChannel(input));
  });
  afterAll(async () => {
    await stopServices(s);
    await t?.cleanup();
    await env?.cleanup();
  });

  test("a press is bound to an approver by the policy's chat identity; a stranger changes nothing", async () => {
    const r = await s.butler.submit(agentIdentity("deployer", "ops"), {
      action: "aws:s3:PutObject",
      resource: "arn:aws:s3:::ops/y",
      reason: "x",
    });
    if (r.status === "already_allowed") throw new Error("unexpected");
    await s.outbox.runOnce();
    expect(slack.cardOf(r.request.id)).toMatchObject({
      status: "pending",
      reason: "x",
      approvalsRequired: 1,
    });

    const stranger = await slack.press(r.request.id, "approve", "U0NOBODY");
    expect(stranger).toEqual({ ok: false, code: "FORBIDDEN", message: "you are not an approver for ops" });
    expect((await s.butler.get(r.request.id)).status).toBe("pending");

    const a1 = await slack.press(r.request.id, "approve", "U0A1");
    expect(a1).toMatchObject({
      ok: true,
      message: "Request approved",
      card: { status: "approved", decidedBy: "a1", decidedVia: "slack" },
    });
    await s.outbox.runOnce();
    expect(slack.cardOf(r.request.id)).toMatchObject({ status: "approved", decidedBy: "a1" });

    const late = await slack.press(r.request.id, "deny", "U0A1");
    expect(late).toMatchObject({
      ok: false,
      code: "ALREADY_DECIDED",
      message: expect.stringContaining("already approved by a1"),
    });
  });
});

const GOVERNED = `project: pay
agents: [a, b, c]
grants:
  - service: stripe
    actions: [refunds:create]
    agents: [a]
    constraints:
      amount: { max: 100 }
  - service: git
    actions: [push]
    resources: ["org/repo"]
    branches: ["feature/*"]
  - service: tools
    actions: [Bash]
    agents: [a]
    deny: ["rm -rf"]
approvers:
  - id: p1
  - id: p2
`;

describe(`requests that would grant more than the denied call are refused (${ENGINE})`, () => {
  const clock = new FakeClock("2026-05-01T10:00:00Z");
  let t: TestDatabase;
  let env: TestEnv;
  let s: Services;
  beforeAll(async () => {
    t = await createTestDatabase();
    env = await createTestEnv({ policies: { "pay.yaml": GOVERNED } });
    s = await startServices({ database: t.database, policiesDir: env.policiesDir, clock });
    await s.policies.importDirectory("test");
  });
  afterAll(async () => {
    await stopServices(s);
    await t?.cleanup();
    await env?.cleanup();
  });

  const who = (agent: string) => agentIdentity(agent, "pay");
  async function deniedAndAsk(
    agent: string,
    call: { action: string; resource?: string; branch?: string; params?: Record<string, unknown> },
  ) {
    const d = await s.gateway.authorize(who(agent), call);
    expect(d.decision).toBe("DENY");
    return s.butler.submit(who(agent), { reason: "x", denial_event_id: d.event_id });
  }

  test("a call that left its branch out cannot become a grant for every branch", async () => {
    await expect(deniedAndAsk("a", { action: "git:push", resource: "org/repo" })).rejects.toThrow(
      "branch: git calls in pay are limited by branch",
    );
  });

  test("a call that left its resource out cannot become a grant for every resource", async () => {
    await expect(deniedAndAsk("a", { action: "stripe:charges:read" })).rejects.toThrow(
      "resource: the call names no resource",
    );
  });

  test("a grant cannot bypass another grant's constraints or deny patterns", async () => {
    await expect(
      deniedAndAsk("b", {
        action: "stripe:refunds:create",
        resource: "stripe.com/v1/refunds",
        params: { amount: 1 },
      }),
    ).rejects.toThrow("limited by the parameter constraints or deny patterns of grant g_1");
    await expect(
      s.butler.submit(who("a"), {
        action: "stripe:refunds:create",
        resource: "stripe.com/v1/refunds",
        reason: "x",
      }),
    ).rejects.toThrow("limited by the parameter constraints or deny patterns of grant g_1");
    await expect(s.butler.submit(who("b"), { action: "tools:Bash", reason: "x" })).rejects.toThrow(
      "grant g_3",
    );
  });

  test("a call that cannot be written as a grant is refused when filed, not when approved", async () => {
    await expect(
      s.butler.submit(who("a"), { action: "stripe:stripe:read", resource: "r", reason: "x" }),
    ).rejects.toThrow("this call cannot be written as a grant");
  });

  test("an approver who approved cannot quietly deny, and the reverse", async () => {
    const r = await s.butler.submit(who("c"), {
      action: "aws:s3:DeleteObject",
      resource: "arn:aws:s3:::b/k",
      reason: "x",
    });
    if (r.status === "already_allowed") throw new Error("unexpected");
    expect(r.request.approvals_required).toBe(2);
    await s.butler.review({ approver: "p1", channel: "api" }, r.request.id, "approve");
    await expect(s.butler.review({ approver: "p1", channel: "api" }, r.request.id, "deny")).rejects.toThrow(
      `you already approved request ${r.request.id}`,
    );
    expect((await s.butler.review({ approver: "p2", channel: "api" }, r.request.id, "deny")).outcome).toBe(
      "denied",
    );
  });

  test("after a grant changed the policy, removing the file still retires the project", async () => {
    const r = await deniedAndAsk("c", { action: "git:push", resource: "org/repo", branch: "main" });
    if (r.status === "already_allowed") throw new Error("unexpected");
    await s.butler.review({ approver: "p1", channel: "api" }, r.request.id, "approve");
    expect(
      (await s.gateway.authorize(who("c"), { action: "git:push", resource: "org/repo", branch: "main" }))
        .decision,
    ).toBe("ALLOW");
    const again = await s.policies.importDirectory("test");
    expect(again.loaded).toEqual([]);
    const { rm } = await import("node:fs/promises");
    await rm(`${env.policiesDir}/pay.yaml`);
    const report = await s.policies.importDirectory("test");
    expect(report.retired.map((x) => x.project)).toEqual(["pay"]);
    expect(
      (await s.gateway.authorize(who("c"), { action: "git:push", resource: "org/repo", branch: "main" }))
        .decision,
    ).toBe("DENY");
  });
});

describe(`reminders (${ENGINE})`, () => {
  const clock = new FakeClock("2026-05-01T10:00:00Z");
  const channel = new FakeChannel("slack");
  let t: TestDatabase;
  let env: TestEnv;
  let s: Services;
  beforeAll(async () => {
    t = await createTestDatabase();
    env = await createTestEnv({
      policies: {
        "ops.yaml": POLICY.replace(
          "  pending_ttl: PT2H\n",
          "  pending_ttl: PT2H\n  reminders:\n    after: PT30M\n    every: PT20M\n    escalate: { after: PT1H, approvers: [a5] }\n",
        ),
      },
    });
    s = await startServices({
      database: t.database,
      policiesDir: env.policiesDir,
      clock,
      channels: [channel],
    });
    await s.policies.importDirectory("test");
  });
  afterAll(async () => {
    await stopServices(s);
    await t?.cleanup();
    await env?.cleanup();
  });

  test("reminders repeat on schedule until the request expires, and it escalates once to the second group; the card says when it expires", async () => {
    const r = await s.butler.submit(agentIdentity("deployer", "ops"), {
      action: "aws:s3:PutObject",
      resource: "arn:aws:s3:::ops/r",
      reason: "x",
    });
    if (r.status === "already_allowed") throw new Error("unexpected");
    await s.outbox.runOnce();
    expect(channel.posts).toHaveLength(1);
    expect(channel.posts[0]?.approvers).not.toContain("a5");
    expect(channel.cardOf(r.request.id)?.requestExpiresAt).toBe("2026-05-01T12:00:00.000Z");
    const step = async (minutes: number) => {
      clock.advance(minutes * 60_000);
      const n = (await s.butler.sweep()).reminded;
      await s.outbox.runOnce();
      return n;
    };
    const until = "the request expires 2026-05-01T12:00:00.000Z";
    expect(await step(29)).toBe(0);
    expect(await step(2)).toBe(1); // 10:31
    expect(await step(0)).toBe(0);
    expect(await step(19)).toBe(1); // 10:50: the second
    expect(channel.notes).toEqual([
      `Reminder 1: still waiting for a decision; ${until}`,
      `Reminder 2: still waiting for a decision; ${until}`,
    ]);
    expect(await step(10)).toBe(1); // 11:00: escalation
    expect(channel.notes.at(-1)).toBe(`Escalated to a5: nobody decided yet; ${until}`);
    expect(channel.posts.map((p) => p.approvers)).toEqual([channel.posts[0]?.approvers, ["a5"]]);
    expect(await step(10)).toBe(1); // 11:10: the third, and escalation is not repeated
    expect(channel.notes.at(-1)).toBe(`Reminder 3: still waiting for a decision; ${until}`);
    expect(channel.posts).toHaveLength(2);
    // Missed reminders are not sent one by one: after a long pause, the latest due is the one sent.
    expect(await step(45)).toBe(1); // 11:55: the fifth falls at 11:50
    expect(channel.notes.at(-1)).toBe(`Reminder 5: still waiting for a decision; ${until}`);
    clock.advance(5 * 60_000);
    expect(await s.butler.sweep()).toMatchObject({ expiredRequests: 1, reminded: 0 });
    await s.outbox.runOnce();
    expect(channel.cardOf(r.request.id)).toMatchObject({ status: "expired" });
    expect(channel.notes.at(-1)).toMatch(/^Expired: nobody decided before/);
    expect(await step(30)).toBe(0);
    const lines: [string, unknown][] = [];
    for await (const l of readLines(t.database.db, { project: "ops" })) {
      const x = l as Record<string, unknown>;
      if (l.type.startsWith("access_request.")) lines.push([l.type, x.reminder ?? x.approvers ?? null]);
    }
    expect(lines).toEqual([
      ["access_request.filed", null],
      ["access_request.reminded", 1],
      ["access_request.reminded", 2],
      ["access_request.escalated", ["a5"]],
      ["access_request.reminded", 3],
      ["access_request.reminded", 5],
      ["access_request.expired", null],
    ]);
  });
  // PostgreSQL only: PGlite has one connection, so nothing else can hold a row lock meanwhile.
  test.skipIf(ENGINE === "pglite")(
    "a request an approval holds locked is skipped, not waited for (waiting after the sweep's audit appends could deadlock)",
    async () => {
      const r = await s.butler.submit(agentIdentity("deployer", "ops"), {
        action: "aws:s3:PutObject",
        resource: "arn:aws:s3:::ops/locked",
        reason: "x",
      });
      if (r.status === "already_allowed") throw new Error("unexpected");
      clock.advance(31 * 60_000);
      const other = new pg.Client({ connectionString: t.url });
      await other.connect();
      try {
        await other.query("BEGIN");
        await other.query("SELECT id FROM access_requests WHERE id = $1 FOR UPDATE", [r.request.id]);
        expect((await s.butler.sweep()).reminded).toBe(0);
        await other.query("ROLLBACK");
        expect((await s.butler.sweep()).reminded).toBe(1);
      } finally {
        await other.end();
      }
    },
  );
  // PostgreSQL only, as above.
  test.skipIf(ENGINE === "pglite")(
    "recording grant expiries takes each project's lock before the audit's, as approvals do: no deadlock with an approval holding that lock",
    async () => {
      const ask = (resource: string) =>
        s.butler.submit(agentIdentity("deployer", "ops"), {
          action: "aws:s3:PutObject",
          resource,
          reason: "x",
        });
      const pending = await ask("arn:aws:s3:::ops/late");
      const granted = await ask("arn:aws:s3:::ops/brief");
      if (pending.status === "already_allowed" || granted.status === "already_allowed")
        throw new Error("unexpected");
      await s.butler.review({ approver: "a1", channel: "api" }, granted.request.id, "approve", {});
      clock.advance(3 * 3600_000); // the pending request's deadline and the grant's expiry have passed
      const other = new pg.Client({ connectionString: t.url });
      await other.connect();
      try {
        // An approval in progress: it holds the project's lock and will append to the audit log.
        await other.query("BEGIN");
        await other.query("SELECT pg_advisory_xact_lock(hashtext('butler.policy'), hashtext('ops'))");
        const sweeping = s.butler.sweep();
        // Wait until the sweep waits for the project's lock (the database says so).
        for (;;) {
          const { rows } = await other.query(
            "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
          );
          if (rows[0].n > 0) break;
        }
        await other.query("SELECT * FROM audit_head FOR UPDATE");
        await other.query("COMMIT");
        const swept = await sweeping;
        expect(swept.expiredGrants).toBe(1);
        expect(swept.expiredRequests).toBeGreaterThanOrEqual(1);
      } finally {
        await other.end();
      }
    },
  );
});
