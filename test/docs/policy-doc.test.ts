import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import {
  type Call,
  compilePolicies,
  evaluate,
  formatIssue,
  type PolicyDocument,
  parsePolicyFile,
} from "../../src/policy/index.js";

/**
 * Keeps docs/policy.md honest: every YAML example in it must parse (or, when marked `# invalid:`,
 * be rejected with exactly the problems the document shows), and the decision reasons it quotes
 * must be the sentences the engine writes for those examples.
 */

const DOC = readFileSync(new URL("../../docs/policy.md", import.meta.url), "utf8");

interface YamlBlock {
  /** Line of the opening fence in docs/policy.md, for failure messages. */
  line: number;
  text: string;
}

function yamlBlocks(markdown: string): YamlBlock[] {
  const blocks: YamlBlock[] = [];
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== "```yaml") continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i] !== "```"; i++) body.push(lines[i]!);
    if (i === lines.length) throw new Error(`the yaml block at line ${start + 1} is not closed`);
    blocks.push({ line: start + 1, text: `${body.join("\n")}\n` });
  }
  return blocks;
}

const blocks = yamlBlocks(DOC);
const policies = blocks.filter((b) => /^project:/m.test(b.text));
const invalid = policies.filter((b) => b.text.startsWith("# invalid:"));
const valid = policies.filter((b) => !b.text.startsWith("# invalid:"));

/** The file name an example is shown under in the document: policies/<project>.yaml. */
function fileOf(block: YamlBlock): string {
  const m = /^project:\s*(\S+)/m.exec(block.text);
  return `policies/${m?.[1] ?? "example"}.yaml`;
}

function parsed(block: YamlBlock): PolicyDocument {
  const r = parsePolicyFile({ file: fileOf(block), text: block.text });
  if (!r.ok) {
    throw new Error(
      `docs/policy.md line ${block.line}: the example does not parse:\n${r.error.map(formatIssue).join("\n")}`,
    );
  }
  return r.value;
}

/** The first valid example containing `marker`. */
function example(marker: string): PolicyDocument {
  const block = valid.find((b) => b.text.includes(marker));
  if (!block)
    throw new Error(`docs/policy.md has no valid yaml example containing ${JSON.stringify(marker)}`);
  return parsed(block);
}

describe("docs/policy.md examples", () => {
  test("the document has the required worked examples", () => {
    expect(valid.length).toBeGreaterThanOrEqual(4);
    expect(invalid.length).toBeGreaterThanOrEqual(1);
    expect(example("project: project-billing").grants.map((g) => g.service)).toEqual(["aws", "git", "tools"]);
    expect(example("id: refunds-tier-1").grants[0]).toMatchObject({ roles: ["support-tier-1"] });
    expect(example("id: stripe-charges-24h").grants.at(-1)?.expiresAt).toBeDefined();
    const withApprovers = valid.map(parsed).find((d) => d.approvers.some((a) => a.slack && a.telegram));
    expect(withApprovers).toBeDefined();
  });

  test.each(valid.map((b) => [b.line, b] as const))("the example at line %i parses", (_line, block) => {
    expect(parsed(block).project).toBeTruthy();
  });

  test.each(invalid.map((b) => [b.line, b] as const))(
    "the invalid example at line %i is rejected with the problems the document shows",
    (_line, block) => {
      const r = parsePolicyFile({ file: fileOf(block), text: block.text });
      expect(r.ok).toBe(false);
      if (r.ok) return;
      for (const issue of r.error) {
        const line = formatIssue(issue);
        expect(DOC.includes(line), `docs/policy.md should show: ${line}`).toBe(true);
      }
    },
  );
});

const SEED_AT = Date.parse("2026-05-01T17:42:11Z");
const EXPIRY = Date.parse("2026-05-02T17:42:11Z");

interface ReasonCase {
  name: string;
  /** Text that picks the example policy the call is decided against. */
  example: string;
  call: Call;
  at: number;
  decision: "ALLOW" | "DENY";
}

const billing = (over: Partial<Call>): Call => ({
  agent: "billing-reconciler-1",
  project: "project-billing",
  action: "stripe:charges:read",
  resource: "stripe.com/v1/charges",
  ...over,
});
const refund = (agent: string, params: Record<string, unknown>): Call => ({
  agent,
  project: "project-support",
  action: "stripe:refunds:create",
  resource: "stripe.com/v1/refunds",
  params,
});

const SEED = "project: project-billing";
const REFUNDS = "id: refunds-tier-1";
const TEMPORARY = "id: stripe-charges-24h";

const CASES: ReasonCase[] = [
  { name: "seed: Stripe is denied", example: SEED, call: billing({}), at: SEED_AT, decision: "DENY" },
  {
    name: "seed: the ledger bucket is readable",
    example: SEED,
    call: billing({ action: "aws:s3:GetObject", resource: "arn:aws:s3:::ledger-internal/2026/05.csv" }),
    at: SEED_AT,
    decision: "ALLOW",
  },
  {
    name: "seed: an unlisted action",
    example: SEED,
    call: billing({ action: "aws:s3:DeleteObject", resource: "arn:aws:s3:::ledger-internal/x" }),
    at: SEED_AT,
    decision: "DENY",
  },
  {
    name: "seed: another bucket",
    example: SEED,
    call: billing({ action: "aws:s3:GetObject", resource: "arn:aws:s3:::other/x" }),
    at: SEED_AT,
    decision: "DENY",
  },
  {
    name: "seed: push to main",
    example: SEED,
    call: billing({ action: "git:push", resource: "reidataai/billing-ledger", branch: "main" }),
    at: SEED_AT,
    decision: "DENY",
  },
  {
    name: "seed: a read that names no branch",
    example: SEED,
    call: billing({ action: "git:read", resource: "reidataai/billing-ledger" }),
    at: SEED_AT,
    decision: "DENY",
  },
  {
    name: "seed: rm -rf through Bash",
    example: SEED,
    call: billing({ action: "tools:Bash", resource: "", params: { command: "rm  -rf /tmp/x" } }),
    at: SEED_AT,
    decision: "DENY",
  },
  {
    name: "seed: an unknown agent",
    example: SEED,
    call: billing({ agent: "intruder", action: "aws:s3:GetObject" }),
    at: SEED_AT,
    decision: "DENY",
  },
  {
    name: "refunds: a small EUR refund by tier 1",
    example: REFUNDS,
    call: refund("support-bot-1", { amount: 4500, currency: "EUR" }),
    at: SEED_AT,
    decision: "ALLOW",
  },
  {
    name: "refunds: too large",
    example: REFUNDS,
    call: refund("support-bot-1", { amount: 7000, currency: "EUR" }),
    at: SEED_AT,
    decision: "DENY",
  },
  {
    name: "refunds: another currency",
    example: REFUNDS,
    call: refund("support-bot-1", { amount: 4500, currency: "GBP" }),
    at: SEED_AT,
    decision: "DENY",
  },
  {
    name: "refunds: no amount",
    example: REFUNDS,
    call: refund("support-bot-1", { currency: "EUR" }),
    at: SEED_AT,
    decision: "DENY",
  },
  {
    name: "refunds: tier 2",
    example: REFUNDS,
    call: refund("support-bot-2", { amount: 4500, currency: "EUR" }),
    at: SEED_AT,
    decision: "DENY",
  },
  {
    name: "temporary: before expiry",
    example: TEMPORARY,
    call: billing({}),
    at: EXPIRY - 1000,
    decision: "ALLOW",
  },
  { name: "temporary: at expiry", example: TEMPORARY, call: billing({}), at: EXPIRY, decision: "DENY" },
  {
    name: "temporary: another agent",
    example: TEMPORARY,
    call: billing({ agent: "invoice-generator" }),
    at: SEED_AT,
    decision: "DENY",
  },
  {
    name: "temporary: another Stripe action",
    example: TEMPORARY,
    call: billing({ action: "stripe:refunds:create", resource: "stripe.com/v1/refunds" }),
    at: SEED_AT,
    decision: "DENY",
  },
  {
    name: "most specific: the constraint beats the resource",
    example: "project: project-specific",
    call: {
      agent: "a",
      project: "project-specific",
      action: "stripe:refunds:create",
      resource: "r",
      params: { amount: 11 },
    },
    at: SEED_AT,
    decision: "DENY",
  },
];

describe("reason sentences quoted in docs/policy.md", () => {
  test.each(CASES)("$name", ({ example: marker, call, at, decision }) => {
    const index = compilePolicies([{ document: example(marker), revision: 1 }]);
    const d = evaluate(index, call, at);
    expect(d.decision).toBe(decision);
    expect(DOC.includes(`\`${d.reason}\``), `docs/policy.md should quote \`${d.reason}\``).toBe(true);
  });

  test("a numeric string amount is allowed, as the refunds table says", () => {
    const index = compilePolicies([{ document: example(REFUNDS), revision: 1 }]);
    const d = evaluate(index, refund("support-bot-1", { amount: "4500", currency: "USD" }), SEED_AT);
    expect(d.decision).toBe("ALLOW");
  });
});
