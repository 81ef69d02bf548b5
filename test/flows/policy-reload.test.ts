import { rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ENGINE } from "../helpers/db.js";
import { seedText } from "../helpers/policy.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { until } from "../helpers/wait.js";

const S3 = { action: "aws:s3:GetObject", resource: "arn:aws:s3:::ledger-internal/x" };
const STRIPE = { action: "stripe:charges:read", resource: "stripe.com/v1/charges" };
const WITH_STRIPE = `${seedText()}
`.replace(
  "approvers:",
  `  - service: stripe
    actions: ["charges:read"]
    resources: ["stripe.com/v1/charges"]
approvers:`,
);

describe(`policy revisions and reloads (${ENGINE})`, () => {
  let s: TestServer;
  let token: string;
  beforeAll(async () => {
    // The watcher is switched on only in the test about it, so that reloads elsewhere are deterministic.
    s = await startTestServer();
    token = await s.agentToken("billing-reconciler-1", "project-billing");
  });
  afterAll(() => s?.cleanup());

  const events = (type: string) => s.events(type);

  test("a file with a misspelt key is rejected with file, line and column, and the previous revision keeps answering", async () => {
    await s.writePolicy(
      "project-billing.yaml",
      seedText().replace('    resources: ["reidataai', '    resouces: ["reidataai'),
    );
    const r = await s.cli(["policy", "reload"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("REJECTED");
    expect(r.stdout).toMatch(
      /project-billing\.yaml:14:5: grants\[1\]\.resouces: unknown key 'resouces'; did you mean 'resources'\?/,
    );
    const d = await s.authorize(token, S3);
    expect(d.body).toMatchObject({ decision: "ALLOW", revision: 1 });
    const failed = await events("policy.load_failed");
    expect(failed.at(-1)).toMatchObject({
      project: "project-billing",
      file: expect.stringContaining("project-billing.yaml"),
      issues: [expect.stringContaining(":14:5: grants[1].resouces: unknown key")],
      issue_count: 1,
    });
  });

  test("a malformed glob is rejected the same way", async () => {
    await s.writePolicy(
      "project-billing.yaml",
      seedText().replace('branches: ["feature/*"]', 'branches: ["feature/[0-9]*"]'),
    );
    const r = await s.cli(["policy", "reload", "--json"]);
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout);
    expect(report.failed[0].issues[0]).toMatch(
      /project-billing\.yaml:15:\d+: grants\[1\]\.branches\[0\]: is not a valid branch pattern/,
    );
    expect((await s.authorize(token, S3)).body).toMatchObject({ decision: "ALLOW", revision: 1 });
  });

  test("a valid change becomes revision 2 and takes effect at once", async () => {
    expect((await s.authorize(token, STRIPE)).body.decision).toBe("DENY");
    await s.writePolicy("project-billing.yaml", WITH_STRIPE);
    const r = await s.cli(["policy", "reload", "--json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).loaded).toEqual([
      { project: "project-billing", revision: 2, file: expect.stringContaining("project-billing.yaml") },
    ]);
    expect((await s.authorize(token, STRIPE)).body).toMatchObject({
      decision: "ALLOW",
      revision: 2,
      grant_id: "g_4",
    });
    const again = await s.cli(["policy", "reload", "--json"]);
    expect(JSON.parse(again.stdout)).toMatchObject({
      loaded: [],
      unchanged: [{ project: "project-billing", revision: 2 }],
    });
  });

  test("history, show and diff describe the revisions", async () => {
    const h = JSON.parse((await s.cli(["policy", "history", "project-billing", "--json"])).stdout);
    expect(h.revisions.map((r: { revision: number }) => r.revision)).toEqual([1, 2]);
    const show = await s.cli(["policy", "show", "project-billing"]);
    expect(show.stdout).toMatch(/^# project-billing: revision 2, from file:/);
    expect(show.stdout).toContain('actions: ["charges:read"]');
    const diff = await s.cli(["policy", "diff", "project-billing", "1", "2"]);
    expect(diff.code).toBe(0);
    const changed = diff.stdout.split("\n").filter((l) => /^[+-][^+-]/.test(l));
    expect(changed).toEqual([
      "+  - service: stripe",
      '+    actions: ["charges:read"]',
      '+    resources: ["stripe.com/v1/charges"]',
    ]);
    const missing = await s.cli(["policy", "show", "nope"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("no policy for project 'nope'");
  });

  test("with POLICY_WATCH, editing a file is picked up without a reload command", async () => {
    s.server.services.policies.watch();
    try {
      await s.writePolicy("project-billing.yaml", seedText());
      await until(
        async () => (await s.authorize(token, STRIPE)).body.revision === 3,
        "revision 3 from the file watcher",
      );
      expect((await s.authorize(token, STRIPE)).body).toMatchObject({ decision: "DENY", revision: 3 });
    } finally {
      s.server.services.policies.stopWatching();
    }
  });

  test("a second file claiming the same project is refused and the project keeps its revision", async () => {
    await s.writePolicy("zz-copy.yaml", seedText());
    const r = await s.cli(["policy", "reload"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(
      /zz-copy\.yaml:\d+:\d+: project: project 'project-billing' is also defined in .*project-billing\.yaml/,
    );
    expect(r.stdout).toMatch(
      /project-billing\.yaml:\d+:\d+: project: project 'project-billing' is also defined in .*zz-copy\.yaml/,
    );
    expect((await s.authorize(token, S3)).body).toMatchObject({ decision: "ALLOW", revision: 3 });
    await rm(join(s.policiesDir, "zz-copy.yaml"));
  });

  test("removing a project's file retires it: every call is denied until it returns", async () => {
    await rm(join(s.policiesDir, "project-billing.yaml"));
    const r = await s.cli(["policy", "reload", "--json"]);
    expect(JSON.parse(r.stdout).retired).toEqual([{ project: "project-billing", revision: 4 }]);
    expect((await s.authorize(token, S3)).body).toMatchObject({
      decision: "DENY",
      reason: "no policy for project project-billing",
    });
    expect((await events("policy.retired")).at(-1)).toMatchObject({
      project: "project-billing",
      revision: 4,
    });
    await s.writePolicy("project-billing.yaml", seedText());
    expect((await s.cli(["policy", "reload"])).code).toBe(0);
    expect((await s.authorize(token, S3)).body).toMatchObject({ decision: "ALLOW", revision: 5 });
  });

  test("every load is in the audit chain, which still verifies", async () => {
    const loaded = await events("policy.loaded");
    expect(loaded.map((e) => e.revision)).toEqual([1, 2, 3, 5]);
    expect((await s.cli(["audit", "verify"])).code).toBe(0);
  });
});
