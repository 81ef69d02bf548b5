import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { FakeClock } from "../helpers/clock.js";
import { ENGINE } from "../helpers/db.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const OPS = `project: ops
agents: [deployer, auditor-bot]
grants:
  - service: aws
    actions: [s3:GetObject]
    resources: ["arn:aws:s3:::ops/*"]
  - id: capped
    service: stripe
    actions: [refunds:create]
    constraints:
      amount: { max: 100 }
approvers:
  - id: jordan
settings:
  approvals: { low: 1, medium: 1, high: 1 }
  grant_ttl: { default: PT1H, max: PT8H }
`;

/**
 * "Why was this allowed on that day": the policy at any past moment (the file stored then, the
 * grants in force then) from `butler policy show --at` and `policy check --at`, three moments
 * around an approval and an expiry; and what a file change would have done over the audited
 * calls, from `butler policy simulate` and the dashboard.
 */
describe(`the policy at any time, and a change simulated over history (${ENGINE})`, () => {
  const clock = new FakeClock("2026-05-01T10:00:00Z");
  let s: TestServer;
  let deployer: string;
  let jordan: string;
  let requestId: string;

  beforeAll(async () => {
    s = await startTestServer({ policies: { "ops.yaml": OPS }, clock });
    deployer = await s.agentToken("deployer", "ops");
    jordan = JSON.parse((await s.cli(["approvers", "token", "jordan", "--json"])).stdout).token;
    clock.set("2026-05-01T10:05:00Z");
    const denied = await s.authorize(deployer, {
      action: "aws:s3:PutObject",
      resource: "arn:aws:s3:::ops/r",
    });
    expect(denied.body.decision).toBe("DENY");
    // A refund refused for its amount, and one allowed: the file change below leaves both alone.
    const refused = await s.authorize(deployer, {
      action: "stripe:refunds:create",
      resource: "stripe.com/v1/refunds",
      params: { amount: 500 },
    });
    expect(refused.body.code).toBe("constraint_failed");
    const filed = await s.http("POST", "/v1/access-requests", deployer, {
      denial_event_id: denied.body.event_id,
      reason: "upload the report",
      ttl: "PT1H",
    });
    requestId = filed.body.access_request.id;
    clock.set("2026-05-01T10:10:00Z");
    expect((await s.http("POST", `/v1/access-requests/${requestId}/approve`, jordan, {})).status).toBe(200);
    clock.set("2026-05-01T12:00:00Z");
  });
  afterAll(() => s?.cleanup());

  const show = async (at: string) => {
    const r = await s.cli(["policy", "show", "ops", "--at", at, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout);
  };
  const check = (at: string) =>
    s.cli([
      "policy",
      "check",
      "--agent",
      "deployer",
      "--project",
      "ops",
      "--action",
      "aws:s3:PutObject",
      "--resource",
      "arn:aws:s3:::ops/r",
      "--at",
      at,
    ]);

  test("policy show --at and policy check --at: before the approval, while the grant was in force, after it expired", async () => {
    const before = await show("2026-05-01T10:07:00Z");
    expect(before).toMatchObject({ revision: 1, at: "2026-05-01T10:07:00.000Z", grants_in_force: [] });
    expect(before.yaml).not.toContain(requestId);
    const during = await show("2026-05-01T10:30:00Z");
    expect(during).toMatchObject({ revision: 2, grants_in_force: [{ id: requestId, agent: "deployer" }] });
    expect(during.yaml).toContain(`- id: ${requestId}`);
    expect(during.yaml).toContain('expires: "2026-05-01T11:10:00Z"');
    const after = await show("2026-05-01T11:30:00Z");
    expect(after.grants_in_force).toEqual([]);
    expect(after.yaml).not.toContain(requestId);

    const [c1, c2, c3] = [
      await check("2026-05-01T10:07:00Z"),
      await check("2026-05-01T10:30:00Z"),
      await check("2026-05-01T11:30:00Z"),
    ];
    expect([c1.code, c2.code, c3.code]).toEqual([1, 0, 1]);
    expect(c1.stdout).toMatch(/^DENY at 2026-05-01T10:07:00.000Z \(revision 1\)/);
    expect(c2.stdout).toMatch(/^ALLOW at 2026-05-01T10:30:00.000Z \(revision 2\): .*req_/);

    const none = await s.cli(["policy", "show", "ops", "--at", "2026-04-30T00:00:00Z"]);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toContain("project 'ops' had no policy at 2026-04-30T00:00:00.000Z");
    const bad = await s.cli(["policy", "show", "ops", "--at", "yesterday"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--at");
  });

  test("policy simulate counts what a file would have allowed over the audited calls, and the dashboard shows the same", async () => {
    const file = join(s.policiesDir, "..", "ops-next.yaml");
    await writeFile(
      file,
      OPS.replace(
        '    resources: ["arn:aws:s3:::ops/*"]\n',
        '    resources: ["arn:aws:s3:::ops/*"]\n  - service: aws\n    actions: [s3:PutObject]\n    resources: ["arn:aws:s3:::ops/*"]\n',
      ),
    );
    const r = await s.cli(["policy", "simulate", "ops", file, "--since", "P1D", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const sim = JSON.parse(r.stdout);
    expect(sim).toMatchObject({
      project: "ops",
      allowed_calls: 1,
      denied_calls: 0,
      refusals_lifted: 0,
      undetermined: 0,
      allowed: [
        {
          agent: "deployer",
          action: "aws:s3:PutObject",
          resource: "arn:aws:s3:::ops/r",
          was: "no_action_grant",
        },
      ],
    });
    expect(sim.allowed[0].event_id).toMatch(/^evt_/);
    const text = await s.cli(["policy", "simulate", "ops", file]);
    expect(text.stdout).toContain("would have allowed 1 call(s) the policy in force denied");

    const missing = await s.cli(["policy", "simulate", "ops", join(s.policiesDir, "nope.yaml")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("cannot read");
    await writeFile(file, "project: other\nagents: [x]\n");
    const wrong = await s.cli(["policy", "simulate", "ops", file]);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toContain("the file is the policy of project 'other', not 'ops'");

    // The dashboard: the policies page as at a moment, and the simulation form.
    const cookie = await s.dashboardCookie(jordan);
    const page = await (
      await fetch(`${s.url}/dashboard/policies?project=ops&at=2026-05-01T10:30`, { headers: { cookie } })
    ).text();
    expect(page).toContain("revision 2, with 1 grant of Butler in force then");
    expect(page).toContain(`- id: ${requestId}`);
    const csrf = /name="_csrf" value="([^"]+)"/.exec(page)?.[1] ?? "";
    const posted = await fetch(`${s.url}/dashboard/policies/ops/simulate`, {
      method: "POST",
      headers: { cookie, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        _csrf: csrf,
        since: "P1D",
        yaml: OPS.replace("actions: [s3:GetObject]", "actions: [s3:GetObject, s3:PutObject]"),
      }).toString(),
    });
    expect(posted.status).toBe(200);
    const html = await posted.text();
    expect(html).toContain("Would have allowed 1 call the policy in force denied");
    expect(html).toContain("<code>arn:aws:s3:::ops/r</code>");
  });
});
