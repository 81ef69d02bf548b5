import { rm } from "node:fs/promises";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { rowsOf } from "../../src/db/client.js";
import { sha256 } from "../../src/hash.js";
import type { Services } from "../../src/services.js";
import { FakeClock } from "../helpers/clock.js";
import { createTestDatabase, ENGINE, type TestDatabase } from "../helpers/db.js";
import { createTestEnv, type TestEnv } from "../helpers/server.js";
import { agentIdentity, startServices, stopServices } from "../helpers/services.js";

const POLICY = `project: ops
agents: [deployer, helper]
grants:
  - service: aws
    actions: [s3:GetObject]
    resources: ["arn:aws:s3:::ops/*"]
approvers:
  - id: a1
settings:
  grant_ttl: { default: PT1H, max: PT8H }
`;

/**
 * A grant change (approval, revocation, expiry) or a retirement stores no effective text of its
 * own: the text is put together from the baseline and the grants' added/removed revisions when
 * read. It must be exactly the text the revision had when it was stored, whose sha256 is the
 * effective hash the audit lines name, however many later changes come.
 */
describe(`a revision's effective text (${ENGINE})`, () => {
  const clock = new FakeClock("2026-05-01T10:00:00Z");
  let t: TestDatabase;
  let env: TestEnv;
  let s: Services;
  /** Each revision's text as read right after it was stored. */
  const seen = new Map<number, string>();

  beforeAll(async () => {
    t = await createTestDatabase();
    env = await createTestEnv({ policies: { "ops.yaml": POLICY } });
    s = await startServices({ database: t.database, policiesDir: env.policiesDir, clock });
    await s.policies.importDirectory("test");
  });
  afterAll(async () => {
    await stopServices(s);
    await t?.cleanup();
    await env?.cleanup();
  });

  async function stored(): Promise<{ revision: number; text: boolean; cause: string | null }[]> {
    const rows = rowsOf<{ revision: number; text: boolean; cause: string | null }>(
      await t.database.db.execute(
        sql`SELECT revision, yaml IS NOT NULL AS text, cause FROM policy_revisions WHERE project = 'ops' ORDER BY revision`,
      ),
    );
    return rows.map((r) => ({ ...r, revision: Number(r.revision) }));
  }

  /** Reads the newest revision, checks its hash, remembers its text; then every earlier one is unchanged. */
  async function newest(): Promise<{ revision: number; yaml: string }> {
    const latest = (await s.policies.latest("ops"))!;
    expect(sha256(latest.yaml)).toBe(latest.effectiveHash);
    seen.set(latest.revision, latest.yaml);
    for (const [n, text] of seen) expect((await s.policies.revision("ops", n))?.yaml).toBe(text);
    return latest;
  }

  async function grant(agent: string, resource: string) {
    const r = await s.butler.submit(agentIdentity(agent, "ops"), {
      action: "aws:s3:PutObject",
      resource,
      ttl: "PT1H",
      reason: "deploy",
    });
    if (r.status === "already_allowed") throw new Error("already allowed");
    await s.butler.review({ approver: "a1", channel: "api" }, r.request.id, "approve");
    return r.request.id;
  }

  test("approvals, a revocation, an expiry, a new file and a retirement each read back as stored", async () => {
    const first = await newest();
    expect(first.yaml).toBe(POLICY);

    const g1 = await grant("deployer", "arn:aws:s3:::ops/one");
    const afterG1 = await newest();
    expect(afterG1.yaml).toContain(`- id: ${g1}`);
    clock.advance(60_000);
    const g2 = await grant("helper", "arn:aws:s3:::ops/two");
    const afterG2 = await newest();
    expect(afterG2.yaml).toContain(`- id: ${g2}`);
    // The text is the baseline with the grants spliced in, in the order they were granted.
    expect(afterG2.yaml.indexOf(g1)).toBeLessThan(afterG2.yaml.indexOf(g2));
    expect(afterG2.yaml.startsWith(POLICY.slice(0, POLICY.indexOf("approvers:")))).toBe(true);

    await s.butler.revokeGrant(g1, "test", "done");
    const afterRevoke = await newest();
    expect(afterRevoke.yaml).not.toContain(g1);
    expect(afterRevoke.yaml).toContain(g2);

    // g2 expires: the sweeper's revision keeps it, marked by its expiry, for the retention time.
    clock.advance(2 * 3600_000);
    expect((await s.butler.sweep()).expiredGrants).toBe(1);
    const afterExpiry = await newest();
    expect(afterExpiry.revision).toBe(afterRevoke.revision + 1);
    expect(afterExpiry.yaml).toContain(g2);

    // A new grant for helper, then a file without helper: its grants are revoked by the file.
    const g3 = await grant("helper", "arn:aws:s3:::ops/three");
    expect((await newest()).yaml).toContain(g3);
    await env.writePolicy("ops.yaml", POLICY.replace("agents: [deployer, helper]", "agents: [deployer]"));
    await s.policies.importDirectory("test");
    const afterFile = await newest();
    expect(afterFile.yaml).not.toContain(g3);

    await rm(join(env.policiesDir, "ops.yaml"));
    await s.policies.importDirectory("test");
    const retired = (await s.policies.latest("ops"))!;
    expect(retired.retired).toBe(true);
    await newest();

    // Only new files store a text; grant changes and the retirement store none.
    const rows = await stored();
    expect(rows.filter((r) => r.text).map((r) => r.revision)).toEqual([first.revision, afterFile.revision]);
    expect(rows.filter((r) => r.cause?.startsWith("grant:")).every((r) => !r.text)).toBe(true);
    expect(seen.size).toBe(rows.length);
  });
});
