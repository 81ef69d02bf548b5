import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { sql } from "drizzle-orm";
import pg from "pg";
import { simulatePolicyFile } from "../src/admin/policy-simulation.js";
import type { Database } from "../src/db/client.js";
import { openDatabase, postgresDatabase } from "../src/db/client.js";
import { migrate } from "../src/db/migrate.js";
import { createLogger } from "../src/logger.js";
import type { PolicyRevision } from "../src/policy-store/policy-store.js";

/**
 * 9. A policy change simulated over 30 days of history: `butler policy simulate` on a project
 * whose audit log holds 1,000,000 decision lines (50 agents, 40 actions, 5,000 resources, ALLOW
 * and DENY with constraint refusals among them), end to end (the history grouped in the database,
 * every distinct call decided twice). Baseline: the same lines only counted, in the same run.
 */
const AGENTS = 50;
const LINES = 1_000_000;

const verbs = Array.from({ length: 20 }, (_, i) => `Op${i}`);
const POLICY = `project: sim
agents: [${Array.from({ length: AGENTS }, (_, i) => `a${i}`).join(", ")}]
grants:
  - service: aws
    actions: [${verbs.slice(0, 10).join(", ")}]
    resources: ["arn:aws:s3:::b1/*", "arn:aws:s3:::b2/*"]
  - service: stripe
    actions: ["refunds:create"]
    constraints:
      amount: { max: 100 }
  - service: aws
    actions: [Op15]
    resources: ["arn:aws:s3:::b3/*"]
    agents: [a1, a2, a3]
`;
/** The change: two buckets more for some verbs, one grant narrowed. */
const PROPOSED = POLICY.replace('"arn:aws:s3:::b2/*"]', '"arn:aws:s3:::b2/*", "arn:aws:s3:::b4/*"]').replace(
  "agents: [a1, a2, a3]",
  "agents: [a1]",
);

async function seed(database: Database, now: Date): Promise<void> {
  // One statement: lines spread over 30 days, each a call of one of 40 actions on one of 5,000
  // resources, answered as the policy answered (ALLOW) or with a deny code.
  await database.db.execute(sql`
    INSERT INTO audit_events (seq, event_id, ts, type, agent, project, action, resource, decision, reason, details, prev_hash, hash)
    SELECT g,
           'evt_' || lpad(to_hex(g), 16, '0'),
           ${now.toISOString()}::timestamptz - ((${LINES} - g) * interval '2592 milliseconds'),
           CASE WHEN g % 3 = 0 THEN 'gateway.denied' ELSE 'gateway.allowed' END,
           'a' || (g % ${AGENTS}),
           'sim',
           CASE WHEN g % 7 = 0 THEN 'stripe:refunds:create' ELSE 'aws:Op' || (g % 20) END,
           CASE WHEN g % 7 = 0 THEN 'stripe.com/v1/refunds' ELSE 'arn:aws:s3:::b' || (g % 5) || '/k' || (g % 1000) END,
           CASE WHEN g % 3 = 0 THEN 'DENY' ELSE 'ALLOW' END,
           'bench',
           CASE WHEN g % 3 = 0 THEN
             jsonb_build_object('deny_code', CASE WHEN g % 7 = 0 THEN 'constraint_failed' ELSE 'resource_not_covered' END)
           ELSE '{}'::jsonb END,
           'x', 'x'
    FROM generate_series(1, ${LINES}) AS g`);
}

export interface SimulationFigures {
  engine: string;
  seconds: number;
  count: number;
  calls: number;
}

/** Section 9 on PostgreSQL (`dbUrl`) and on the embedded PGlite (the default engine), in a temporary directory. */
export async function benchSimulation(dbUrl: string): Promise<SimulationFigures[]> {
  console.log(
    `\n9. A policy change simulated over 30 days of history (${LINES.toLocaleString("en")} audit lines)`,
  );
  const log = createLogger("warn");
  const out = [
    await onEngine(
      "PostgreSQL",
      postgresDatabase(new pg.Pool({ connectionString: dbUrl, max: 4 }), dbUrl, log),
    ),
  ];
  const dir = await mkdtemp(join(tmpdir(), "butler-bench-sim-"));
  try {
    out.push(await onEngine("PGlite", await openDatabase({ kind: "pglite", dataDir: dir }, log)));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return out;
}

async function onEngine(engine: string, database: Database): Promise<SimulationFigures> {
  console.log(`   ${engine}:`);
  try {
    await migrate(database);
    const now = new Date();
    const seeded = performance.now();
    await seed(database, now);
    await database.db.execute(sql`ANALYZE audit_events`);
    console.log(`     seeded in ${((performance.now() - seeded) / 1000).toFixed(1)} s`);
    const latest: PolicyRevision = {
      project: "sim",
      revision: 1,
      contentHash: "",
      source: "bench",
      cause: null,
      baseline: POLICY,
      effectiveHash: "",
      retired: false,
      createdAt: now.toISOString(),
      yaml: POLICY,
    };
    const deps = { db: database.db, policies: { latest: async () => latest }, clock: { now: () => now } };
    const since = new Date(now.getTime() - 30 * 86_400_000);
    const t0 = performance.now();
    const counted = await database.db.execute(
      sql`SELECT count(*) AS n FROM audit_events WHERE project = 'sim' AND type IN ('gateway.allowed', 'gateway.denied') AND ts >= ${since.toISOString()}`,
    );
    const count = performance.now() - t0;
    const runs: number[] = [];
    let result: Awaited<ReturnType<typeof simulatePolicyFile>> | undefined;
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      result = await simulatePolicyFile(deps, "sim", { yaml: PROPOSED, since: "P30D" });
      runs.push(performance.now() - t);
    }
    const best = Math.min(...runs) / 1000;
    const n = Number((counted as unknown as { rows: { n: string }[] }).rows[0]?.n ?? 0);
    console.log(
      `     baseline: counting the ${n.toLocaleString("en")} lines          ${(count / 1000).toFixed(2)} s`,
    );
    console.log(
      `     simulate (best of 3; runs ${runs.map((r) => (r / 1000).toFixed(2)).join(", ")} s)  ${best.toFixed(2)} s = ${(best / (count / 1000)).toFixed(2)}x the count (target < 5 s): ${result?.allowed_calls.toLocaleString("en")} calls newly allowed, ${result?.denied_calls.toLocaleString("en")} newly denied, ${result?.undetermined.toLocaleString("en")} undetermined`,
    );
    return { engine, seconds: best, count: count / 1000, calls: result?.calls ?? 0 };
  } finally {
    await database.close();
  }
}
