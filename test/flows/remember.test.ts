import { createHash } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { FakeClock } from "../helpers/clock.js";
import { ENGINE } from "../helpers/db.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

// Comments, blank lines, odd spacing and a key after the grants: all must survive byte for byte.
const OPS = `# Ops policy: owned by the platform team.
project: ops
agents: [deployer]   # the release bot

grants:
  # reads of the ops bucket
  - service: aws
    actions: [s3:GetObject]
    resources: ["arn:aws:s3:::ops/*"]

approvers:
  - id: jordan
  - id: sam
settings:
  approvals: { low: 1, medium: 2, high: 2 }
  grant_ttl: { default: PT1H, max: PT8H }
`;

const sha = (s: string) => createHash("sha256").update(s).digest("hex");

/**
 * Approve and remember: approvers make a grant a permanent rule of the policy file. The file gets
 * one added block and every other byte as it was; the rule is in force once the grant has expired;
 * the change is audited with both hashes. A policies directory kept in git gets a patch instead.
 */
describe(`approve and remember (${ENGINE})`, () => {
  const clock = new FakeClock("2026-05-01T10:00:00Z");
  let s: TestServer;
  let deployer: string;
  let jordan: string;
  let sam: string;

  beforeAll(async () => {
    s = await startTestServer({ policies: { "ops.yaml": OPS }, clock });
    deployer = await s.agentToken("deployer", "ops");
    jordan = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
    sam = JSON.parse((await s.cli(["approvers", "token", "sam", "--json"])).stdout).token;
  });
  afterAll(() => s?.cleanup());

  /** Denied, asked for, approved by both: the approved request's id. */
  async function approved(resource: string, ttl = "PT1H"): Promise<string> {
    const denied = await s.authorize(deployer, { action: "aws:s3:PutObject", resource });
    expect(denied.body.decision).toBe("DENY");
    const filed = await s.http("POST", "/v1/access-requests", deployer, {
      denial_event_id: denied.body.event_id,
      reason: "upload the report",
      ttl,
    });
    expect(filed.status, JSON.stringify(filed.body)).toBe(201);
    const id = filed.body.access_request.id as string;
    for (const who of [jordan, sam])
      expect((await s.http("POST", `/v1/access-requests/${id}/approve`, who, {})).status).toBe(200);
    return id;
  }
  const remember = (id: string, token: string) => s.http("POST", `/v1/access-requests/${id}/remember`, token);

  test("the third approval of the same scope suggests remembering it", async () => {
    const q2 = "arn:aws:s3:::ops/reports/q2";
    for (let i = 0; i < 3; i++) {
      await approved(q2, "PT10M");
      clock.advance(11 * 60_000);
    }
    const denied = await s.authorize(deployer, { action: "aws:s3:PutObject", resource: q2 });
    const filed = await s.http("POST", "/v1/access-requests", deployer, {
      denial_event_id: denied.body.event_id,
      reason: "again",
    });
    expect(filed.body.access_request.blast_radius.approved_before).toBe(3);
    expect(filed.body.access_request.blast_radius.facts).toContain(
      "Approved 3 times before for deployer: once approved, Remember makes it a permanent rule of the policy file",
    );
  });

  test("two approvers make the grant a rule: one block added, every other byte kept, in force without a TTL, audited with both hashes", async () => {
    const before = await readFile(join(s.policiesDir, "ops.yaml"), "utf8");
    const id = await approved("arn:aws:s3:::ops/reports/q1");

    const first = await remember(id, jordan);
    expect(first.body).toMatchObject({ status: "recorded", remembered_by: ["jordan"], needed: 2 });
    const again = await remember(id, jordan);
    expect(again.body).toMatchObject({ status: "recorded", remembered_by: ["jordan"] });
    expect(await readFile(join(s.policiesDir, "ops.yaml"), "utf8")).toBe(before);
    expect((await remember(id, deployer)).status).toBe(403);

    const done = await remember(id, sam);
    expect(done.status, JSON.stringify(done.body)).toBe(200);
    expect(done.body).toMatchObject({
      status: "remembered",
      remembered_by: ["jordan", "sam"],
      written: "file",
      path: join(s.policiesDir, "ops.yaml"),
    });
    const after = await readFile(join(s.policiesDir, "ops.yaml"), "utf8");
    const block =
      /^ {2}# remembered from access request [^\n]*\n(?: {2}[ -] [^\n]*\n)+/m.exec(after)?.[0] ?? "";
    expect(block).toContain(`- id: remembered-${id}`);
    expect(block).toContain('resources: ["arn:aws:s3:::ops/reports/q1"]');
    expect(block).toContain('agents: ["deployer"]');
    expect(block).not.toContain("expires");
    // Exactly one block added, right after the last grant; nothing else moved.
    expect(after.replace(block, "")).toBe(before);
    expect(after.indexOf(block)).toBe(before.indexOf("\napprovers:"));
    expect(done.body.diff).toContain(`+  - id: remembered-${id}`);

    // The grant expires; the rule does not.
    clock.advance(2 * 3600_000);
    const later = await s.authorize(deployer, {
      action: "aws:s3:PutObject",
      resource: "arn:aws:s3:::ops/reports/q1",
    });
    expect(later.body).toMatchObject({ decision: "ALLOW", grant_id: `remembered-${id}` });

    const [line] = await s.events("policy.remembered");
    expect(line).toMatchObject({
      request_id: id,
      remembered_by: ["jordan", "sam"],
      written: "file",
      before_hash: sha(before),
      after_hash: sha(after),
    });
    expect((await s.events("policy.remember_recorded")).length).toBe(2);
    expect((await remember(id, jordan)).status).toBe(409);

    const cookie = await s.dashboardCookie(jordan);
    const page = await (await fetch(`${s.url}/dashboard/requests/${id}`, { headers: { cookie } })).text();
    expect(page).toContain(`made a permanent rule of ${join(s.policiesDir, "ops.yaml")} by jordan, sam`);
  });

  test("a file edited on disk since it was loaded is not written over; a directory kept in git gets a patch", async () => {
    const id = await approved("arn:aws:s3:::ops/reports/q3");
    const file = join(s.policiesDir, "ops.yaml");
    const loaded = await readFile(file, "utf8");
    await writeFile(file, `${loaded}# an edit nobody loaded yet\n`);
    await remember(id, jordan);
    const refused = await remember(id, sam);
    expect(refused.status).toBe(409);
    expect(refused.body.error.message).toContain("changed on disk since revision");
    await writeFile(file, loaded);

    await mkdir(join(s.policiesDir, ".git"));
    const done = await remember(id, sam);
    expect(done.status, JSON.stringify(done.body)).toBe(200);
    expect(done.body).toMatchObject({ status: "remembered", written: "patch" });
    expect(done.body.path).toBe(join(s.dataDir, "policy-patches", `ops-${id}.patch`));
    expect(await readFile(file, "utf8")).toBe(loaded);
    const patch = await readFile(done.body.path, "utf8");
    expect(patch).toContain(`+  - id: remembered-${id}`);
    expect(patch).toBe(done.body.diff);
  });

  test("a revoked grant cannot become a rule", async () => {
    const id = await approved("arn:aws:s3:::ops/reports/q5");
    expect((await s.http("DELETE", `/v1/grants/${id}`, jordan, { reason: "incident" })).status).toBe(200);
    const refused = await remember(id, jordan);
    expect(refused.status).toBe(409);
    expect(refused.body.error.message).toContain("was revoked by approver:jordan");
    expect((await s.events("policy.remember_recorded")).filter((e) => e.request_id === id)).toEqual([]);
  });
});
