import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ENGINE } from "../helpers/db.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

/** Every key of a JSON value that is not snake_case (lower case, digits and underscores), with its path. */
function camelKeys(v: unknown, path = "$"): string[] {
  if (Array.isArray(v)) return v.flatMap((x, i) => camelKeys(x, `${path}[${i}]`));
  if (v === null || typeof v !== "object") return [];
  return Object.entries(v).flatMap(([k, x]) => [
    ...(/^[a-z0-9_]+$/.test(k) ? [] : [`${path}.${k}`]),
    ...camelKeys(x, `${path}.${k}`),
  ]);
}

describe(`every --json output is snake_case (${ENGINE})`, () => {
  let s: TestServer;
  let dir: string;
  let agent: string;
  beforeAll(async () => {
    s = await startTestServer({ env: { BUTLER_MASTER_KEY: "ab".repeat(32) } });
    agent = await s.agentToken("billing-reconciler-1", "project-billing");
    dir = await mkdtemp(join(tmpdir(), "butler-json-"));
  });
  afterAll(async () => {
    await s?.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  /**
   * Runs a command with --json; returns its parsed output (JSON lines: each line parsed). It must
   * exit with `code` (0 unless told): a failed command's error envelope would pass the key check.
   */
  async function json(argv: string[], stdin?: string, lines = false, code = 0): Promise<unknown> {
    const r = await s.cli([...argv, "--json"], stdin);
    expect(r.code, `butler ${argv.join(" ")}: ${r.stderr}`).toBe(code);
    const out = lines
      ? r.stdout
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l))
      : JSON.parse(r.stdout);
    expect.soft(camelKeys(out), `butler ${argv.join(" ")} --json`).toEqual([]);
    return out;
  }

  async function ask(action: string, resource: string): Promise<string> {
    const r = await s.http("POST", "/v1/access-requests", agent, { action, resource, reason: "reconcile" });
    expect(r.status).toBe(201);
    return r.body.access_request.id as string;
  }

  test("through every command that has something to say", async () => {
    const created = (await json([
      "agents",
      "create",
      "invoice-generator",
      "--project",
      "project-billing",
    ])) as {
      token_id: string;
    };
    const listed = (await json(["agents", "list"])) as { tokens: Record<string, unknown>[] };
    expect.soft(listed.tokens[0]).toHaveProperty("token_id");
    await json([
      "agents",
      "revoke",
      "invoice-generator",
      "--project",
      "project-billing",
      "--token",
      created.token_id,
    ]);
    await json(["approvers", "token", "jordan"]);
    await json(["auditors", "token", "sam"]);
    await json(["dashboard", "link", "jordan"]);

    const approved = await ask("stripe:charges:read", "stripe.com/v1/charges");
    const denied = await ask("stripe:refunds:create", "stripe.com/v1/refunds");
    await json(["requests", "list"]);
    await json(["requests", "show", approved]);
    await json(["requests", "approve", approved, "--approver", "jordan", "--ttl", "PT10M"]);
    await json(["requests", "deny", denied, "--approver", "jordan", "--reason", "no"]);
    await json(["grants", "list", "--all"]);
    await json(["grants", "revoke", approved, "--reason", "done"]);

    await json(["policy", "show", "project-billing"]);
    await json(["policy", "history", "project-billing"]);
    await json(["policy", "diff", "project-billing", "1"]);
    await json(["policy", "reload"]);
    await json(["policy", "validate", s.policiesDir]);
    await json(
      [
        "policy",
        "check",
        "--agent",
        "billing-reconciler-1",
        "--project",
        "project-billing",
        "--action",
        "git:read",
        "--resource",
        "reidataai/billing-ledger",
        s.policiesDir,
      ],
      undefined,
      false,
      1, // a DENY: policy check exits 1
    );
    await json(["providers", "validate", join(process.cwd(), "providers")]);

    await json(["credentials", "set", "STRIPE_API_KEY"], "sk_test_x");
    await json(["credentials", "list"]);
    await json(["credentials", "delete", "STRIPE_API_KEY"]);

    await json(["db", "migrate"]);
    const key = join(dir, "checkpoint-key");
    await json(["audit", "keygen", "--out", key]);
    await json(["audit", "verify"]);
    await json(["audit", "verify", "--public-key", `${key}.pub`]);
    await json(["audit", "replay", "--agent", "billing-reconciler-1"], undefined, true);
    const exported = await s.cli(["audit", "export"]);
    await writeFile(join(dir, "audit.jsonl"), exported.stdout);
    await json(["audit", "verify-export", join(dir, "audit.jsonl")]);
    await json(["audit", "verify-export", join(dir, "audit.jsonl"), "--public-key", `${key}.pub`]);
    expect(await json(["requests", "show", "req_nonexistent0000"], undefined, false, 1)).toMatchObject({
      error: { code: "INVALID_INPUT", message: expect.any(String) },
    });
  });

  test("requests approve --ttl prints the TTL granted, not the one asked for", async () => {
    const id = await ask("stripe:balance:read", "stripe.com/v1/balance");
    const r = await s.cli(["requests", "approve", id, "--approver", "jordan", "--ttl", "PT10M"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^approved: ${id} +approved .* granted for PT10M, until \\S+Z\\n$`));
    expect(r.stdout).not.toContain("PT24H");
    const json = JSON.parse((await s.cli(["requests", "show", id, "--json"])).stdout);
    expect(Date.parse(json.grant.expires_at) - Date.parse(json.decision.at)).toBe(600_000);
  });
});
