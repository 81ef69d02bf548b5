import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { sha256 } from "../../src/hash.js";
import { composeEffective, type GrantEntry } from "../../src/policy/effective.js";
import { atMigration, ENGINE } from "../helpers/db.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { agentIdentity } from "../helpers/services.js";

const POLICY = `project: ops
agents: [deployer]
grants:
  - service: aws
    actions: [s3:GetObject]
    resources: ["arn:aws:s3:::ops/*"]
approvers:
  - id: a1
settings:
  grant_ttl: { default: PT1H, max: PT8H }
`;
const KEPT = "req_legacykept000001";
const GONE = "req_legacygone000001";
const entry = (id: string, resource: string): GrantEntry => ({
  id,
  agent: "deployer",
  action: "aws:s3:PutObject",
  resource,
  branch: undefined,
  expiresAt: Date.parse("2099-01-01T00:00:00Z"),
  note: `access request ${id} by deployer`,
  approvedBy: ["a1"],
});
const kept = entry(KEPT, "arn:aws:s3:::ops/kept");
const gone = entry(GONE, "arn:aws:s3:::ops/gone");
const REV2 = composeEffective(POLICY, [kept, gone]);
const REV3 = composeEffective(POLICY, [kept]);

/**
 * A database from before migration 0014, when every revision stored its effective text: the
 * stored revisions read back as they were, and the grants in force then (counted as added before
 * any revision without text) are served, revoked and written into the texts of new revisions.
 */
describe(`policies stored before 0014 (${ENGINE})`, () => {
  let s: TestServer;
  const deployer = agentIdentity("deployer", "ops");

  beforeAll(async () => {
    s = await startTestServer({
      policies: { "ops.yaml": POLICY },
      freshDatabase: true,
      beforeStart: (t) =>
        atMigration(t.env, "0013_a2a_snake_case", async (query) => {
          const source = `file:${join(t.policiesDir, "ops.yaml")}`;
          const revision = `INSERT INTO policy_revisions (project, revision, content_hash, source, yaml, baseline, effective_hash, cause, created_at)
            VALUES ('ops', $1, $2, $3, $4, $5, $6, $7, $8)`;
          const hash = sha256(POLICY);
          await query(revision, [1, hash, source, POLICY, POLICY, hash, null, "2026-11-01T10:00:00Z"]);
          await query(revision, [
            2,
            hash,
            source,
            REV2,
            POLICY,
            sha256(REV2),
            `grant:${GONE}`,
            "2026-11-01T10:01:00Z",
          ]);
          await query(revision, [
            3,
            hash,
            source,
            REV3,
            POLICY,
            sha256(REV3),
            `revoke:${GONE}`,
            "2026-11-01T10:02:00Z",
          ]);
          const grant = `INSERT INTO grants (id, project, agent, action, resource, approved_by, created_at, expires_at, revoked_at, revoked_by)
            VALUES ($1, 'ops', 'deployer', 'aws:s3:PutObject', $2, '["a1"]'::jsonb, $3, '2099-01-01T00:00:00Z', $4, $5)`;
          await query(grant, [KEPT, kept.resource, "2026-11-01T10:00:30Z", null, null]);
          await query(grant, [GONE, gone.resource, "2026-11-01T10:00:40Z", "2026-11-01T10:02:00Z", "a1"]);
        }),
    });
  });
  afterAll(async () => {
    await s?.cleanup();
  });

  const authorize = (resource: string) =>
    s.server.services.gateway.authorize(deployer, { action: "aws:s3:PutObject", resource });
  const policies = () => s.server.services.policies;

  test("the stored revisions read back as stored, and the grant in force then still allows", async () => {
    expect((await policies().latest("ops"))?.revision).toBe(3);
    expect((await policies().revision("ops", 2))?.yaml).toBe(REV2);
    expect((await policies().revision("ops", 3))?.yaml).toBe(REV3);
    expect((await authorize(kept.resource)).decision).toBe("ALLOW");
    expect((await authorize(gone.resource)).decision).toBe("DENY");
  });

  test("new revisions put their text together from the old grants and the new ones", async () => {
    const filed = await s.server.services.butler.submit(deployer, {
      action: "aws:s3:PutObject",
      resource: "arn:aws:s3:::ops/new",
      ttl: "PT1H",
      reason: "deploy",
    });
    if (filed.status === "already_allowed") throw new Error("already allowed");
    await s.server.services.butler.review({ approver: "a1", channel: "api" }, filed.request.id, "approve");
    const four = (await policies().latest("ops"))!;
    expect(four.revision).toBe(4);
    expect(four.yaml.startsWith(REV3)).toBe(false);
    expect(four.yaml).toContain(`- id: ${KEPT}`);
    expect(four.yaml).toContain(`- id: ${filed.request.id}`);
    expect(four.yaml).not.toContain(GONE);
    expect(sha256(four.yaml)).toBe(four.effectiveHash);

    await s.server.services.butler.revokeGrant(KEPT, "test", "upgrade check");
    const five = (await policies().latest("ops"))!;
    expect(five.yaml).not.toContain(KEPT);
    expect(five.yaml).toContain(filed.request.id);
    expect(sha256(five.yaml)).toBe(five.effectiveHash);
    expect((await authorize(kept.resource)).decision).toBe("DENY");
    // Revision 4 still reads as it was stored, the revoked grant in it.
    expect((await policies().revision("ops", 4))?.yaml).toBe(four.yaml);
    expect((await policies().revision("ops", 2))?.yaml).toBe(REV2);
  });
});
