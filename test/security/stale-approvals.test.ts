import { sql } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { rowsOf } from "../../src/db/client.js";
import { sha256 } from "../../src/hash.js";
import { FakeChannel } from "../fakes/fake-channel.js";
import { FakeNotifier } from "../fakes/fake-notifier.js";
import { ENGINE } from "../helpers/db.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { until } from "../helpers/wait.js";

/**
 * Stale approvals, as an attacker would use them: file while the policy is loose, get the
 * request approved after the owners tightened it; or edit a pending request in the database and
 * let an approver approve it. Every approval re-checks the request against the policy in force
 * and against what was filed (as the audit chain keeps it); a request that no longer holds is
 * superseded, the agent and the cards are told, and nothing is granted.
 */

const BEFORE = `project: shop
agents: [refunder, payer]
grants:
  - service: stripe
    actions: [charges:read]
approvers:
  - id: jordan
require_approval:
  - actions: ["stripe:payment_intents:create"]
    when:
      amount: { min: 50001 }
settings:
  grant_ttl: { default: PT4H, max: P1D }
  approvals: { low: 1, medium: 1, high: 1 }
`;

// The owners cap refunds at 100 cents and payments at 100000 after the requests were filed.
const AFTER = BEFORE.replace(
  "grants:\n",
  `grants:
  - id: small-refunds
    service: stripe
    actions: [refunds:create]
    resources: [stripe.com/v1/refunds]
    constraints:
      amount: { max: 100 }
  - id: payments
    service: stripe
    actions: [payment_intents:create]
    constraints:
      amount: { max: 100000 }
`,
);

const REFUND = { action: "stripe:refunds:create", resource: "stripe.com/v1/refunds" };

describe(`approvals re-check the request at decision time (${ENGINE})`, () => {
  const notifier = new FakeNotifier();
  const channel = new FakeChannel();
  let s: TestServer;
  let refunder: string;
  let payer: string;
  let jordan: string;

  beforeAll(async () => {
    s = await startTestServer({ policies: { "shop.yaml": BEFORE }, notifier, channels: [channel] });
    refunder = await s.agentToken("refunder", "shop");
    payer = await s.agentToken("payer", "shop");
    jordan = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
  });
  afterAll(async () => {
    await s?.cleanup();
  });

  async function fileAfterDenial(token: string, call: Record<string, unknown>): Promise<string> {
    const d = await s.authorize(token, call);
    expect(d.body.decision).toBe("DENY");
    const r = await s.http("POST", "/v1/access-requests", token, {
      denial_event_id: d.body.event_id,
      reason: "customer asked for it",
      ...(d.body.code === "approval_required" ? { params: call.params } : {}),
    });
    expect(r.status).toBe(201);
    return r.body.access_request.id;
  }

  const approve = (id: string) => s.http("POST", `/v1/access-requests/${id}/approve`, jordan, {});
  const get = async (id: string) => (await s.http("GET", `/v1/access-requests/${id}`, refunder)).body;

  async function tighten() {
    await s.writePolicy("shop.yaml", AFTER);
    const r = await s.cli(["policy", "reload", "--json"]);
    expect(JSON.parse(r.stdout).loaded.map((l: { project: string }) => l.project)).toContain("shop");
  }

  let refundRequest: string;
  let paymentRequest: string;

  test("requests filed while the policy is loose", async () => {
    refundRequest = await fileAfterDenial(refunder, { ...REFUND, params: { amount: 1_000_000 } });
    paymentRequest = await fileAfterDenial(payer, {
      action: "stripe:payment_intents:create",
      resource: "stripe.com/v1/payment_intents",
      params: { amount: 1_000_000, currency: "eur" },
    });
    expect((await get(refundRequest)).status).toBe("pending");
  });

  test("after the owners add `amount: max 100`, the same request filed now is refused", async () => {
    await tighten();
    const d = await s.authorize(refunder, { ...REFUND, params: { amount: 1_000_000 } });
    expect(d.body).toMatchObject({ decision: "DENY", code: "constraint_failed" });
    const r = await s.http("POST", "/v1/access-requests", refunder, { ...REFUND, reason: "again" });
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe("PRECONDITION_FAILED");
  });

  test("approving the request filed before the change grants nothing: it is superseded", async () => {
    const r = await approve(refundRequest);
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe("SUPERSEDED");
    expect(r.body.error.message).toContain("the policy changed since this was filed; ask again");
    const after = await get(refundRequest);
    expect(after.status).toBe("superseded");
    expect(after.grant).toBeNull();
    const d = await s.authorize(refunder, { ...REFUND, params: { amount: 1_000_000 } });
    expect(d.body.decision).toBe("DENY");
    expect((await s.authorize(refunder, { ...REFUND, params: { amount: 50 } })).body.decision).toBe("ALLOW");
  });

  test("the agent and the cards are told to ask again", async () => {
    await s.server.services.outbox.drain();
    const told = notifier.of("request_superseded").find((n) => n.requestId === refundRequest);
    expect(told?.reason).toContain("the policy changed since this was filed; ask again");
    expect(channel.cardOf(refundRequest)?.status).toBe("superseded");
    expect(channel.notes.some((n) => n.startsWith("Superseded, nothing granted"))).toBe(true);
  });

  test("a one-shot approval of a payment above the new limit is superseded too", async () => {
    const r = await approve(paymentRequest);
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe("SUPERSEDED");
    expect(r.body.error.message).toContain("an approval cannot lift this");
    expect((await s.http("GET", `/v1/access-requests/${paymentRequest}`, payer)).body.status).toBe(
      "superseded",
    );
    const d = await s.authorize(payer, {
      action: "stripe:payment_intents:create",
      resource: "stripe.com/v1/payment_intents",
      params: { amount: 1_000_000, currency: "eur" },
    });
    expect(d.body.decision).toBe("DENY");
  });

  test("agent text in a one-shot proposal stays on one comment line (no lines of its own)", async () => {
    await s.writePolicy(
      "shop.yaml",
      AFTER.replace(
        "require_approval:\n",
        'require_approval:\n  - actions: ["stripe:customers:update"]\n    when:\n      memo: { pattern: "*" }\n',
      ),
    );
    await s.cli(["policy", "reload"]);
    const memo = "x\nparams:\n  amount: 1\n# approved by the CFO";
    const id = await fileAfterDenial(payer, {
      action: "stripe:customers:update",
      resource: "stripe.com/v1/customers/cus_9",
      params: { memo },
    });
    const diff: string = (await s.http("GET", `/v1/access-requests/${id}`, payer)).body.proposal.diff;
    expect(diff.split("\n").filter((l) => l.startsWith("params:"))).toHaveLength(1);
    expect(diff.split("\n").filter((l) => l.startsWith("#"))).toHaveLength(2);
  });

  test("a higher risk tier (more approvals needed) supersedes a pending request", async () => {
    const id = await fileAfterDenial(refunder, {
      action: "stripe:customers:read",
      resource: "stripe.com/v1/customers/cus_1",
    });
    expect((await get(id)).approvals_required).toBe(1);
    await s.writePolicy(
      "shop.yaml",
      AFTER.replace(
        "approvals: { low: 1, medium: 1, high: 1 }",
        'approvals: { low: 1, medium: 1, high: 2 }\n  risk: { "stripe:customers:*": high }',
      ),
    );
    await s.cli(["policy", "reload"]);
    const r = await approve(id);
    expect(r.status).toBe(409);
    expect(r.body.error.message).toContain("it now counts as high risk and needs 2 approval(s)");
    expect((await get(id)).status).toBe("superseded");
  });

  test("a shorter maximum TTL supersedes a pending request", async () => {
    const id = await fileAfterDenial(refunder, {
      action: "stripe:invoices:read",
      resource: "stripe.com/v1/invoices/in_2",
    });
    await s.writePolicy(
      "shop.yaml",
      AFTER.replace("max: P1D", "max: PT1H").replace("default: PT4H", "default: PT1H"),
    );
    await s.cli(["policy", "reload"]);
    const r = await approve(id);
    expect(r.status).toBe(409);
    expect(r.body.error.message).toContain(
      "the maximum grant TTL is now PT1H, shorter than the PT4H asked for",
    );
    expect((await get(id)).status).toBe("superseded");
  });
});

describe(`a grant approved before the owners tighten the policy stops at the new limit (${ENGINE})`, () => {
  let s: TestServer;
  let agent: string;

  beforeAll(async () => {
    s = await startTestServer({ policies: { "shop.yaml": BEFORE } });
    agent = await s.agentToken("refunder", "shop");
  });
  afterAll(async () => {
    await s?.cleanup();
  });

  test("an unconstrained grant from an access request is revoked when a constraint now governs its call", async () => {
    const filed = await s.http("POST", "/v1/access-requests", agent, { ...REFUND, reason: "refunds" });
    expect(filed.status).toBe(201);
    const jordan = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
    const id = filed.body.access_request.id;
    expect((await s.http("POST", `/v1/access-requests/${id}/approve`, jordan, {})).status).toBe(200);
    expect((await s.authorize(agent, { ...REFUND, params: { amount: 1_000_000 } })).body.decision).toBe(
      "ALLOW",
    );

    await s.writePolicy("shop.yaml", AFTER);
    await s.cli(["policy", "reload"]);
    const d = await s.authorize(agent, { ...REFUND, params: { amount: 1_000_000 } });
    expect(d.body).toMatchObject({ decision: "DENY", code: "constraint_failed" });
    expect((await s.authorize(agent, { ...REFUND, params: { amount: 50 } })).body.decision).toBe("ALLOW");
    const grant = (await s.http("GET", `/v1/access-requests/${id}`, agent)).body.grant;
    expect(grant.revoked_at).not.toBeNull();
    const lines = (await s.cli(["audit", "export"])).stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines.find((l) => l.type === "grant.revoked" && l.grant_id === id)?.reason).toContain(
      "grant small-refunds in",
    );
  });
});

describe.skipIf(ENGINE !== "postgres")(
  "an approval racing a policy import (postgres: two connections)",
  () => {
    let s: TestServer;
    let agent: string;
    let jordan: string;

    beforeAll(async () => {
      s = await startTestServer({ policies: { "shop.yaml": BEFORE } });
      agent = await s.agentToken("refunder", "shop");
      jordan = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
    });
    afterAll(async () => {
      await s?.cleanup();
    });

    test("an import that commits while the approval waits is the policy the approval is checked against", async () => {
      const filed = await s.http("POST", "/v1/access-requests", agent, { ...REFUND, reason: "race" });
      expect(filed.status).toBe(201);
      const id = filed.body.access_request.id;
      // Another instance imports AFTER (amount: max 100): it holds the project's lock while it
      // stores the new revision, and the approval arrives meanwhile.
      const importer = new pg.Client({ connectionString: s.env.DATABASE_URL });
      await importer.connect();
      try {
        await importer.query("BEGIN");
        await importer.query("SELECT pg_advisory_xact_lock(hashtext('butler.policy'), hashtext('shop'))");
        const approving = s.http("POST", `/v1/access-requests/${id}/approve`, jordan, {});
        await until(async () => {
          const r = await importer.query(
            "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
          );
          return r.rows[0].n > 0;
        }, "the approval to wait for the project's lock");
        await importer.query(
          `INSERT INTO policy_revisions (project, revision, content_hash, source, yaml, baseline, effective_hash)
         SELECT project, revision + 1, $1, source, $2, $2, $1 FROM policy_revisions
         WHERE project = 'shop' ORDER BY revision DESC LIMIT 1`,
          [sha256(AFTER), AFTER],
        );
        await importer.query("COMMIT");
        const r = await approving;
        expect(r.status, JSON.stringify(r.body)).toBe(409);
        expect(r.body.error.message).toContain("the policy changed since this was filed");
      } finally {
        await importer.end();
      }
      await s.server.services.policies.refreshProject("shop");
      const d = await s.authorize(agent, { ...REFUND, params: { amount: 1_000_000 } });
      expect(d.body.decision).toBe("DENY");
    });
  },
);

const TWO = `project: vault
agents: [mover]
approvers:
  - id: alex
  - id: blair
  - id: casey
settings:
  approvals: { low: 2, medium: 2, high: 2 }
`;

describe(`an approval counts only while its approver still may decide, and as the audit log recorded it (${ENGINE})`, () => {
  let s: TestServer;
  let agent: string;
  const token: Record<string, string> = {};

  beforeAll(async () => {
    s = await startTestServer({ policies: { "vault.yaml": TWO } });
    agent = await s.agentToken("mover", "vault");
    for (const who of ["alex", "blair", "casey"])
      token[who] = JSON.parse((await s.cli(["approvers", "token", who, "--json"])).stdout).token;
  });
  afterAll(async () => {
    await s?.cleanup();
  });

  async function file(resource: string): Promise<string> {
    const r = await s.http("POST", "/v1/access-requests", agent, {
      action: "aws:s3:GetObject",
      resource,
      reason: "two people",
    });
    expect(r.status).toBe(201);
    return r.body.access_request.id;
  }
  const approve = (id: string, who: string) =>
    s.http("POST", `/v1/access-requests/${id}/approve`, token[who], {});

  test("an approver removed after approving no longer counts towards the two approvals", async () => {
    const id = await file("arn:aws:s3:::vault/a");
    expect((await approve(id, "alex")).body.outcome).toBe("recorded");
    await s.writePolicy("vault.yaml", TWO.replace("  - id: alex\n", ""));
    await s.cli(["policy", "reload"]);
    const second = await approve(id, "blair");
    expect(second.status).toBe(200);
    expect(second.body.outcome).toBe("recorded");
    expect(second.body.access_request.status).toBe("pending");
    expect((await approve(id, "casey")).body.outcome).toBe("approved");
    await s.writePolicy("vault.yaml", TWO);
    await s.cli(["policy", "reload"]);
  });

  test("an approval inserted in the database is not counted: the request is superseded", async () => {
    const id = await file("arn:aws:s3:::vault/b");
    await s.server.services.database.db.execute(
      sql`INSERT INTO request_reviews (request_id, approver, verdict, channel) VALUES (${id}, 'alex', 'approve', 'api')`,
    );
    const r = await approve(id, "blair");
    expect(r.status).toBe(409);
    expect(r.body.error.message).toContain("the approval by alex is not in the audit log as recorded");
    expect((await s.http("GET", `/v1/access-requests/${id}`, agent)).body.status).toBe("superseded");
    expect(
      (await s.authorize(agent, { action: "aws:s3:GetObject", resource: "arn:aws:s3:::vault/b" })).body
        .decision,
    ).toBe("DENY");
  });
});

describe(`a pending request edited in the database is never granted as edited (${ENGINE})`, () => {
  let s: TestServer;
  let agent: string;
  let jordan: string;

  beforeAll(async () => {
    s = await startTestServer({ policies: { "shop.yaml": BEFORE } });
    agent = await s.agentToken("refunder", "shop");
    jordan = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
  });
  afterAll(async () => {
    await s?.cleanup();
  });

  async function file(resource: string): Promise<string> {
    const r = await s.http("POST", "/v1/access-requests", agent, {
      action: "stripe:charges:write",
      resource,
      reason: "one charge",
    });
    expect(r.status).toBe(201);
    return r.body.access_request.id;
  }

  async function expectSuperseded(id: string) {
    const r = await s.http("POST", `/v1/access-requests/${id}/approve`, jordan, {});
    expect(r.status).toBe(409);
    expect(r.body.error.message).toContain("altered after it was filed");
    const rows = rowsOf<{ status: string }>(
      await s.server.services.database.db.execute(sql`SELECT status FROM access_requests WHERE id = ${id}`),
    );
    expect(rows[0]!.status).toBe("superseded");
    // The agent is told to ask again, not which tamper check fired.
    const seen = (await s.http("GET", `/v1/access-requests/${id}`, agent)).body;
    expect(seen.decision.reason).toBe("this request was altered after it was filed; ask again");
    const grants = rowsOf<{ n: number }>(
      await s.server.services.database.db.execute(
        sql`SELECT count(*)::int AS n FROM grants WHERE id = ${id}`,
      ),
    );
    expect(grants[0]!.n).toBe(0);
    expect(
      (
        await s.authorize(agent, {
          action: "stripe:charges:write",
          resource: "stripe.com/v1/charges/ch_other",
        })
      ).body.decision,
    ).toBe("DENY");
  }

  test("no false alarm: resources that look like URLs with credentials are filed, audited and granted as written", async () => {
    for (const resource of [
      "https://files.example/report.csv&token=abcdef123456",
      "ssh://git@github.example/org/repo",
      "https://files.example/bot123456:ABCdef/report",
    ]) {
      const id = await file(resource);
      const r = await s.http("POST", `/v1/access-requests/${id}/approve`, jordan, {});
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect((await s.authorize(agent, { action: "stripe:charges:write", resource })).body.decision).toBe(
        "ALLOW",
      );
    }
  });

  test("the resource widened to a wildcard", async () => {
    const id = await file("stripe.com/v1/charges/ch_1");
    await s.server.services.database.db.execute(
      sql`UPDATE access_requests SET resource = 'stripe.com/v1/charges/*' WHERE id = ${id}`,
    );
    await expectSuperseded(id);
  });

  test("the resource widened with the proposal and its hash rewritten to match", async () => {
    const id = await file("stripe.com/v1/charges/ch_2");
    const [row] = rowsOf<{ proposal_diff: string }>(
      await s.server.services.database.db.execute(
        sql`SELECT proposal_diff FROM access_requests WHERE id = ${id}`,
      ),
    );
    const diff = row!.proposal_diff.replaceAll("stripe.com/v1/charges/ch_2", "stripe.com/v1/charges/*");
    await s.server.services.database.db.execute(
      sql`UPDATE access_requests SET resource = 'stripe.com/v1/charges/*', proposal_diff = ${diff}, proposal_hash = ${sha256(diff)} WHERE id = ${id}`,
    );
    await expectSuperseded(id);
  });

  test("the agent's reason rewritten to mislead the approver", async () => {
    const id = await file("stripe.com/v1/charges/ch_reason");
    await s.server.services.database.db.execute(
      sql`UPDATE access_requests SET reason = 'approved by the CFO already, urgent' WHERE id = ${id}`,
    );
    await expectSuperseded(id);
  });

  test("a request whose filing token was revoked is superseded, not granted", async () => {
    const second = await s.agentToken("refunder", "shop");
    const r = await s.http("POST", "/v1/access-requests", second, {
      action: "stripe:charges:write",
      resource: "stripe.com/v1/charges/ch_stolen",
      reason: "with a token that leaked",
    });
    expect(r.status).toBe(201);
    const [{ token_id: tokenId }] = rowsOf<{ token_id: string }>(
      await s.server.services.database.db.execute(
        sql`SELECT token_id FROM access_requests WHERE id = ${r.body.access_request.id}`,
      ),
    ) as [{ token_id: string }];
    const revoked = await s.cli(["agents", "revoke", "refunder", "--project", "shop", "--token", tokenId]);
    expect(revoked.code, revoked.stderr).toBe(0);
    const a = await s.http("POST", `/v1/access-requests/${r.body.access_request.id}/approve`, jordan, {});
    expect(a.status).toBe(409);
    expect(a.body.error.message).toContain(`the agent token that filed it (${tokenId}) was revoked`);
  });

  test("a request kept before rows held their filed event (no link) is found and granted as filed", async () => {
    const id = await file("stripe.com/v1/charges/ch_legacy");
    await s.server.services.database.db.execute(
      sql`UPDATE access_requests SET filed_event_id = NULL WHERE id = ${id}`,
    );
    const r = await s.http("POST", `/v1/access-requests/${id}/approve`, jordan, {});
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.outcome).toBe("approved");
  });

  test("a longer TTL, with the link to its audit record cut", async () => {
    const id = await file("stripe.com/v1/charges/ch_3");
    await s.server.services.database.db.execute(
      sql`UPDATE access_requests SET filed_event_id = NULL, requested_ttl_seconds = 86400 WHERE id = ${id}`,
    );
    await expectSuperseded(id);
  });
});
