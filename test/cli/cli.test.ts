import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { AuditLine } from "../../src/audit/chain.js";
import { story } from "../../src/audit/story.js";
import { termSafe } from "../../src/cli/output.js";
import { ENGINE } from "../helpers/db.js";
import { verifyExport } from "../helpers/outside-verifier.js";
import { seedText } from "../helpers/policy.js";
import { createTestEnv, runCli, type TestEnv } from "../helpers/server.js";

test("agent-written text cannot drive the terminal in replays", () => {
  const line = {
    seq: 1,
    ts: "2026-05-01T00:00:00.000Z",
    type: "gateway.denied",
    action: "tools:Bash",
    resource: "\u001b[2J\u001b]0;pwned\u0007x\r\nfake line",
    reason: "no",
  } as unknown as AuditLine;
  const out = termSafe(story(line));
  expect(out).toBe("DENIED tools:Bash on \\x1b[2J\\x1b]0;pwned\\x07x\\x0d\\x0afake line: no");
  expect(out).not.toMatch(/[\u0000-\u001f]/);
});

test("characters no one sees are shown as escapes: bidi, zero-width, soft hyphen, Unicode tags", () => {
  expect(termSafe("a\u202eb\u200bc\u00add\u{E0041}e\uFE0Ff")).toBe(
    "a\\u202eb\\u200bc\\xadd\\u{e0041}e\\ufe0ff",
  );
  expect(termSafe("plain ascii, é, 日本, emoji 🙂")).toBe("plain ascii, é, 日本, emoji 🙂");
});

describe("offline policy commands", () => {
  let t: TestEnv;
  beforeAll(async () => {
    t = await createTestEnv({
      policies: {
        "project-billing.yaml": seedText(),
        "broken.yaml":
          "project: broken\nagents: [a]\ngrants:\n  - service: aws\n    actions: [x]\n    resouces: ['*']\n  - service: git\n    actions: ['{a,b}']\n",
      },
    });
  });
  afterAll(() => t?.cleanup());

  test("policy validate lists every problem as file:line:col and exits 1", async () => {
    const r = await t.cli(["policy", "validate", t.policiesDir]);
    expect(r.code).toBe(1);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toMatch(
      /broken\.yaml:6:5: grants\[0\]\.resouces: unknown key 'resouces'; did you mean 'resources'\?/,
    );
    expect(lines[1]).toMatch(/broken\.yaml:8:15: grants\[1\]\.actions\[0\]: is not a valid action pattern/);
    expect(lines[2]).toBe("2 problems in 1 file");
  });

  test("policy validate passes on the shipped policies and speaks JSON", async () => {
    const r = await runCli(["policy", "validate", "policies", "--json"], {});
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, projects: ["project-billing"], issues: [] });
    const file = await t.cli(["policy", "validate", `${t.policiesDir}/project-billing.yaml`]);
    expect(file).toMatchObject({ code: 0, stdout: "1 file valid: project-billing\n" });
  });

  test("policy validate on a missing path is a clear error", async () => {
    const r = await t.cli(["policy", "validate", "/nonexistent/dir"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("butler: /nonexistent/dir: no such file or directory\n");
  });

  test("policy check decides one call offline", async () => {
    const base = ["policy", "check", "--agent", "billing-reconciler-1", "--project", "project-billing"];
    const allow = await runCli(
      [
        ...base,
        "--action",
        "git:push",
        "--resource",
        "reidataai/billing-ledger",
        "--branch",
        "feature/x",
        t.policiesDir,
      ],
      {},
    );
    expect(allow).toMatchObject({ code: 0, stdout: "ALLOW: allowed by grant g_2 of project-billing\n" });
    const deny = await runCli(
      [...base, "--action", "tools:Bash", "--params", '{"command":"rm -rf /"}', "--json", t.policiesDir],
      {},
    );
    expect(deny.code).toBe(1);
    expect(JSON.parse(deny.stdout)).toMatchObject({ decision: "DENY", code: "deny_pattern" });
    const badParams = await runCli([...base, "--action", "x:y", "--params", "{", t.policiesDir], {});
    expect(badParams.code).toBe(2);
    expect(badParams.stderr).toContain("--params is not valid JSON");
  });

  test("usage errors exit 2 and say what is wrong", async () => {
    expect(await runCli([], {})).toMatchObject({ code: 2, stdout: expect.stringContaining("Usage: butler") });
    const unknown = await runCli(["frobnicate"], {});
    expect(unknown).toMatchObject({
      code: 2,
      stderr: "butler: unknown command: butler frobnicate\nRun butler --help for usage.\n",
    });
    const missing = await runCli(["agents", "create", "x"], {});
    expect(missing).toMatchObject({ code: 2, stderr: expect.stringContaining("--project is required") });
    const badFlag = await runCli(["audit", "verify", "--nope"], {});
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toContain("--nope");
    const json = await runCli(["frobnicate", "--json"], {});
    expect(JSON.parse(json.stdout)).toEqual({
      error: { code: "USAGE", message: "unknown command: butler frobnicate" },
    });
  });

  test("text from policy files cannot drive the terminal", async () => {
    await t.writePolicy("evil.yaml", 'project: evil\nagents: []\n"k\\e]0;pwned\\a\\e[2J\\u202e": 1\n');
    const r = await t.cli(["policy", "validate", `${t.policiesDir}/evil.yaml`]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("unknown key 'k\\x1b]0;pwned\\x07\\x1b[2J\\u202e'");
    expect(r.stdout).not.toMatch(/[\u001b\u0007\u202e]/);
  });

  test("bad configuration is reported with every variable named", async () => {
    const r = await runCli(["audit", "verify"], {
      PORT: "http",
      LOG_LEVEL: "loud",
      DATABASE_URL: "mysql://x",
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("PORT must be a whole number");
    expect(r.stderr).toContain("LOG_LEVEL must be one of");
    expect(r.stderr).toContain("DATABASE_URL must be a postgres:// or postgresql:// URL");
  });
});

/** With no server running, commands open the database themselves (and take the PGlite lock). */
describe(`commands on the database directly, with no server (${ENGINE})`, () => {
  let t: TestEnv;
  beforeAll(async () => {
    t = await createTestEnv();
  });
  afterAll(() => t?.cleanup());

  test("db migrate, reload, agents, audit: the whole loop without a server", async () => {
    expect((await t.cli(["db", "migrate", "--json"])).stdout).toContain('"via": "database"');
    const reload = await t.cli(["policy", "reload", "--json"]);
    expect(reload.code).toBe(0);
    expect(JSON.parse(reload.stdout).loaded).toEqual([
      { project: "project-billing", revision: 1, file: expect.any(String) },
    ]);

    const created = await t.cli([
      "agents",
      "create",
      "billing-reconciler-1",
      "--project",
      "project-billing",
      "--json",
    ]);
    expect(created.code).toBe(0);
    const tok = JSON.parse(created.stdout);
    expect(tok).toMatchObject({
      agent: "billing-reconciler-1",
      project: "project-billing",
      warnings: [],
      token: expect.stringMatching(/^bt_/),
    });

    const warned = await t.cli(["agents", "create", "ghost", "--project", "project-billing"]);
    expect(warned.stderr).toContain("agent 'ghost' is not listed under agents");

    const list = await t.cli(["agents", "list", "--json"]);
    const tokens = JSON.parse(list.stdout).tokens;
    expect(tokens.map((x: { agent: string }) => x.agent).sort()).toEqual(["billing-reconciler-1", "ghost"]);
    expect(list.stdout).not.toContain(tok.token);

    const revoke = await t.cli(["agents", "revoke", "ghost", "--project", "project-billing"]);
    expect(revoke.code).toBe(0);
    const listed = await t.cli(["agents", "list"]);
    expect(listed.stdout).toMatch(/ghost {2}created .* REVOKED/);

    const verify = await t.cli(["audit", "verify"]);
    expect(verify).toMatchObject({
      code: 0,
      stdout: "audit chain verified: 4 events, intact through sequence 4\n",
    });
    const exported = await t.cli(["audit", "export"]);
    expect(verifyExport(exported.stdout)).toEqual({ ok: true, count: 4 });
    const types = exported.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l).type);
    expect(types).toEqual([
      "policy.loaded",
      "agent_token.created",
      "agent_token.created",
      "agent_token.revoked",
    ]);
    const actor = JSON.parse(exported.stdout.trim().split("\n")[1]!).actor;
    expect(actor).toMatch(/^cli:/);

    const ghost = await t.cli(["audit", "export", "--agent", "ghost", "--since", "2000-01-01T00:00:00Z"]);
    expect(ghost.stdout.trim().split("\n")).toHaveLength(2);
    const future = await t.cli(["audit", "export", "--since", "2999-01-01T00:00:00Z"]);
    expect(future.stdout).toBe("");
    const badSince = await t.cli(["audit", "export", "--since", "yesterday"]);
    expect(badSince.code).toBe(2);
  });

  test("arguments are checked the same way without a server", async () => {
    const bad = await t.cli(["agents", "create", "bad\u001b[31magent", "--project", "p q"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("agent must be an agent name");
    expect(bad.stderr).not.toContain("\u001b");
    const huge = await t.cli(["policy", "diff", "project-billing", "1", "99999999999"]);
    expect(huge).toMatchObject({ code: 1, stderr: "butler: revision is too large\n" });
  });

  test("an unreadable policy file is reported without stopping the others", async () => {
    const { mkdir, rmdir } = await import("node:fs/promises");
    await mkdir(`${t.policiesDir}/a-directory.yaml`);
    try {
      const r = await t.cli(["policy", "reload", "--json"]);
      expect(r.code).toBe(1);
      const report = JSON.parse(r.stdout);
      expect(report.failed[0].issues[0]).toMatch(/a-directory\.yaml:1:1: the file is not a regular file/);
      expect(report.unchanged.map((u: { project: string }) => u.project)).toEqual(["project-billing"]);
    } finally {
      await rmdir(`${t.policiesDir}/a-directory.yaml`);
    }
  });

  test("replay of an agent without events says so", async () => {
    const r = await t.cli(["audit", "replay", "--agent", "nobody"]);
    expect(r).toMatchObject({ code: 0, stdout: "no events for agent nobody\n" });
  });
});
