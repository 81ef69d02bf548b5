import { performance } from "node:perf_hooks";
import { systemClock } from "../src/clock.js";
import type { Db } from "../src/db/client.js";
import { preChecks } from "../src/gateway/pre-checks.js";
import { createTrust } from "../src/gateway/trust.js";
import { createUsage } from "../src/gateway/usage.js";
import { compilePolicies, parsePolicyFile } from "../src/policy/index.js";
import { trustLimit, trustMayLimit } from "../src/policy/trust.js";

/**
 * 8. The steps before the policy decides, in process, per call (no database: no rate limits): the
 * pact check of a call within its agent's pact, and data_protection scanning a call's parameters
 * for every kind; baseline: the same call in a project without pact or data_protection (what every
 * call paid before these steps existed).
 */
const BASE = `project: p
agents: [a]
grants:
  - service: revolut
    actions: ["*"]
`;
const WITH = `${BASE}pacts:
  - agent: a
    purpose: Reconcile transactions
    intended_tools: [revolut_list_transactions, "revolut:transactions:*"]
    intended_operations: [read]
    expected_cost_per_call: { amount: 10000, currency: EUR }
`;
const DP = `${WITH}data_protection: { email: flag, iban: redact, card_number: deny, api_key: deny, private_key: deny }
`;

function projectOf(text: string) {
  const r = parsePolicyFile({ file: "p.yaml", text });
  if (!r.ok) throw new Error(JSON.stringify(r.error));
  return compilePolicies([{ document: r.value, revision: 1 }]).projects.get("p")!;
}

async function perCall(text: string, seconds: number): Promise<number> {
  const project = projectOf(text);
  const call = {
    agent: "a",
    project: "p",
    action: "revolut:transactions:read",
    params: { from: "2026-01-01", to: "2026-01-31", count: 100, note: "monthly reconciliation of the card" },
  };
  const pact = { tool: "revolut_list_transactions", group: "read", amount: undefined };
  const now = new Date();
  let n = 0;
  const end = performance.now() + seconds * 1000;
  const started = performance.now();
  while (performance.now() < end) {
    for (let i = 0; i < 1000; i++) await preChecks(project, undefined, call, now, pact);
    n += 1000;
  }
  return ((performance.now() - started) * 1000) / n;
}

const TRUST = `${BASE}trust:
  initial: 800
  rules:
    - id: low-trust
      below: 600
      actions: ["revolut:payments:*", "stripe:payment_intents:*"]
      constraints:
        amount: { max: 5000 }
`;

/** A database that answers every read with no rows, and counts them (nothing else may be asked of it). */
function countingDb(): { db: Db; reads: () => number } {
  let reads = 0;
  const db = {
    select: () => ({
      from: () => ({
        where: async () => {
          reads++;
          return [];
        },
      }),
    }),
  } as unknown as Db;
  return { db, reads: () => reads };
}

/**
 * The steps after the pre-checks, per call: drift's count of the call (in memory), and the trust
 * step of a call a trust rule could limit (the score kept in memory after the first read, then the
 * rule's constraints); with how many database reads the calls made.
 */
async function afterSteps(seconds: number) {
  const project = projectOf(TRUST);
  const changes = { subscribe: () => () => true, publish: async () => {} };
  const usage = createUsage({ db: countingDb().db, audit: undefined as never, clock: systemClock, changes });
  const counted = countingDb();
  const trust = createTrust({
    db: counted.db,
    audit: undefined as never,
    clock: systemClock,
    changes,
  });
  const call = {
    agent: "a",
    project: "p",
    action: "revolut:payments:create",
    params: { amount: 4000, currency: "EUR" },
  };
  const now = new Date();
  const time = async (step: () => unknown) => {
    let n = 0;
    const end = performance.now() + seconds * 1000;
    const started = performance.now();
    while (performance.now() < end) {
      for (let i = 0; i < 1000; i++) await step();
      n += 1000;
    }
    return { us: ((performance.now() - started) * 1000) / n, calls: n };
  };
  const drift = await time(() => usage.note("p", "a", "revolut_create_payment", "write", now));
  const t = await time(async () => {
    if (!trustMayLimit(project, call.agent, call.action)) return;
    const score = await trust.score("p", "a", 800);
    return trustLimit(project, call, score);
  });
  return { drift: drift.us, trust: t.us, trustCalls: t.calls, trustReads: counted.reads() };
}

export async function benchPreChecks(seconds: number) {
  console.log("\n8. The steps before the policy decides (in process, per call)");
  const per = Math.max(0.5, seconds / 4);
  const base = await perCall(BASE, per);
  const pact = await perCall(WITH, per);
  const dp = await perCall(DP, per);
  const row = (name: string, us: number) =>
    console.log(`   ${name.padEnd(80)} ${us.toFixed(2).padStart(8)} µs/call`);
  row("baseline: a project with no pact and no data_protection", base);
  row("with the agent's pact (a call within it)", pact);
  row("with the pact and data_protection (5 kinds, 4 parameters)", dp);
  console.log(
    `   = +${(pact - base).toFixed(2)} µs for the pact, +${(dp - base).toFixed(2)} µs for both (target: < 20 µs per call; no database round trip)`,
  );
  const after = await afterSteps(per);
  row("drift: counting the call for its agent (in memory, stored in batches)", after.drift);
  row("trust: a call a trust rule could limit (score kept in memory, the rule checked)", after.trust);
  console.log(
    `   = pact + drift + trust: +${(pact - base + after.drift + after.trust).toFixed(2)} µs per call (target: < 20 µs); ${after.trustReads} database read(s) for ${after.trustCalls} trust-limited calls (the first; then none until the score changes)`,
  );
  return { base, pact, dp, ...after };
}
