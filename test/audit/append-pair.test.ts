import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createAuditLog } from "../../src/audit/audit-log.js";
import { verifyAuditChain } from "../../src/audit/verify.js";
import { rowsOf } from "../../src/db/client.js";
import { createLogger } from "../../src/logger.js";
import { FakeClock } from "../helpers/clock.js";
import { createTestDatabase, ENGINE, type TestDatabase } from "../helpers/db.js";

const log = createLogger("silent");

/** appendPair: a decision and its outcome, in one commit, the outcome naming the decision. */
describe(`audit appendPair on ${ENGINE}`, () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await createTestDatabase();
  });
  afterAll(() => t.cleanup());

  test("each pair is written by one transaction, adjacent in the chain, among concurrent appends", async () => {
    const audit = createAuditLog({ database: t.database, clock: new FakeClock(), log });
    const singles = Array.from({ length: 30 }, (_, i) => audit.append({ type: "x.single", details: { i } }));
    const pairs = Array.from({ length: 10 }, (_, i) =>
      audit.appendPair({ type: "x.decided", details: { i } }, (decided) => ({
        type: "x.outcome",
        details: { i, decision_event_id: decided },
      })),
    );
    await Promise.all(singles);
    const written = await Promise.all(pairs);
    await audit.close();
    const rows = rowsOf<{ event_id: string; seq: number; tx: string }>(
      await t.database.db.execute(sql`SELECT event_id, seq::int AS seq, xmin::text AS tx FROM audit_events`),
    );
    const byId = new Map(rows.map((r) => [r.event_id, r]));
    for (const [decided, outcome] of written) {
      expect(outcome.decision_event_id).toBe(decided.event_id);
      expect(outcome.seq).toBe(decided.seq + 1);
      expect(byId.get(outcome.event_id)!.tx).toBe(byId.get(decided.event_id)!.tx);
    }
    expect(await verifyAuditChain(t.database.db)).toMatchObject({ ok: true });
  });

  test("a closed log refuses a pair and writes neither line", async () => {
    const audit = createAuditLog({ database: t.database, clock: new FakeClock(), log });
    await audit.close();
    const before = rowsOf<{ n: number }>(
      await t.database.db.execute(sql`SELECT count(*)::int AS n FROM audit_events`),
    )[0]!.n;
    await expect(
      audit.appendPair({ type: "x.decided" }, () => ({ type: "x.outcome" })),
    ).rejects.toMatchObject({ code: "UNAVAILABLE" });
    const after = rowsOf<{ n: number }>(
      await t.database.db.execute(sql`SELECT count(*)::int AS n FROM audit_events`),
    )[0]!.n;
    expect(after).toBe(before);
  });
});
