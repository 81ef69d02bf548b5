import { sql } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createAuditLog, readLines } from "../../src/audit/audit-log.js";
import { ChainVerifier, hashLine } from "../../src/audit/chain.js";
import { verifyAuditChain } from "../../src/audit/verify.js";
import type { AuditDurability } from "../../src/config.js";
import { type Database, postgresDatabase } from "../../src/db/client.js";
import { createLogger } from "../../src/logger.js";
import { FakeClock } from "../helpers/clock.js";
import { createPostgresDatabase, createTestDatabase, ENGINE, type TestDatabase } from "../helpers/db.js";

const log = createLogger("silent");

/** Drizzle wraps driver errors ("Failed query: …"); the database's own message is the cause. */
async function expectRefused(p: Promise<unknown>) {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x as Error & { cause?: Error },
  );
  expect(e, "the statement should have been refused").toBeDefined();
  expect(String(e?.cause?.message ?? e?.message)).toMatch(/append-only/);
}

describe(`audit log on ${ENGINE}`, () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await createTestDatabase();
  });
  afterAll(() => t.cleanup());

  async function all(db: Database) {
    const out = [];
    for await (const l of readLines(db.db)) out.push(l);
    return out;
  }

  test("appended events form a chain from the genesis that verifies", async () => {
    const audit = createAuditLog({ database: t.database, clock: new FakeClock(), log });
    const a = await audit.append({
      type: "gateway.denied",
      agent: "a",
      project: "p",
      action: "x:y",
      resource: "r",
      decision: "DENY",
      reason: "no",
      httpStatus: 403,
    });
    const b = await audit.append({
      type: "policy.loaded",
      project: "p",
      details: { revision: 1, file: "p.yaml", nested: { list: [1, "two"] } },
    });
    expect(a).toMatchObject({
      seq: 1,
      prev_hash: "0".repeat(64),
      ts: "2026-05-01T17:42:11.000Z",
      agent: "a",
      http_status: 403,
    });
    expect(b).toMatchObject({ seq: 2, prev_hash: a.hash, revision: 1, agent: null });
    const stored = await all(t.database);
    expect(stored).toEqual([a, b]);
    expect(await verifyAuditChain(t.database.db)).toMatchObject({ ok: true, count: 2, verifiedThrough: 2 });
    await audit.close();
  });

  test("text PostgreSQL cannot store is mended before hashing, so the chain still verifies", async () => {
    const audit = createAuditLog({ database: t.database, clock: new FakeClock(), log });
    const line = await audit.append({
      type: "x.happened",
      reason: "nul \u0000 and lone \ud800 surrogate",
      details: { "k\u0000": "v\u0000" },
    });
    expect(line.reason).toBe("nul \uFFFD and lone \uFFFD surrogate");
    expect(await verifyAuditChain(t.database.db)).toMatchObject({ ok: true });
    await audit.close();
  });

  test("a detail named __proto__ (JSON from outside can hold one) is kept as a field, read back and verified", async () => {
    const audit = createAuditLog({ database: t.database, clock: new FakeClock(), log });
    const details = JSON.parse('{"__proto__": {"polluted": true}, "nested": {"__proto__": "x"}, "z": 1}');
    const line = await audit.append({ type: "x.happened", details });
    expect(Object.hasOwn(line, "__proto__")).toBe(true);
    expect(Object.getOwnPropertyDescriptor(line, "__proto__")?.value).toEqual({ polluted: true });
    expect(Object.hasOwn(line.nested as object, "__proto__")).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const stored = (await all(t.database)).find((l) => l.event_id === line.event_id);
    expect(stored).toEqual(line);
    expect(Object.hasOwn(stored!, "__proto__")).toBe(true);
    expect(await verifyAuditChain(t.database.db)).toMatchObject({ ok: true });
    await audit.close();
  });

  test("a detail may not overwrite a core field", async () => {
    const audit = createAuditLog({ database: t.database, clock: new FakeClock(), log });
    // Written out, it does not compile (the reason of an event is its core `reason`)...
    // @ts-expect-error a core field is not a detail
    await expect(audit.append({ type: "x", details: { reason: "why" } })).rejects.toThrow(/core field/);
    // ...and a name that only shows at run time is refused there.
    const dynamic: Record<string, unknown> = { ["deci" + "sion"]: "ALLOW" };
    await expect(audit.append({ type: "x", details: dynamic })).rejects.toThrow(/core field/);
    await audit.close();
  });

  test("events written in a transaction that rolls back leave no trace and no gap", async () => {
    const audit = createAuditLog({ database: t.database, clock: new FakeClock(), log });
    const before = (await all(t.database)).length;
    await expect(
      t.database.db.transaction(async (tx) => {
        await audit.appendInTx(tx, [{ type: "x.one" }, { type: "x.two" }]);
        throw new Error("roll back");
      }),
    ).rejects.toThrow("roll back");
    const next = await audit.append({ type: "x.after" });
    expect(next.seq).toBe(before + 1);
    expect(await verifyAuditChain(t.database.db)).toMatchObject({ ok: true, count: before + 1 });
    await audit.close();
  });

  test("several instances appending at once keep one chain with no fork, gap or lost event", async () => {
    const handles =
      ENGINE === "postgres"
        ? [t.database, await t.openAnother(), await t.openAnother()]
        : [t.database, t.database, t.database];
    const logs = handles.map((database) =>
      createAuditLog({ database, clock: new FakeClock(), log, batchMax: 50 }),
    );
    const start = (await all(t.database)).length;
    const perInstance = 400;
    const results = await Promise.all(
      logs.flatMap((audit, i) =>
        Array.from({ length: perInstance }, (_, j) =>
          j % 10 === 0
            ? t.database.db
                .transaction((tx) =>
                  audit.appendInTx(tx, [{ type: "x.in_tx", agent: `i${i}`, reason: String(j) }]),
                )
                .then((l) => l[0]!)
            : audit.append({ type: "x.queued", agent: `i${i}`, reason: String(j) }),
        ),
      ),
    );
    const stored = await all(t.database);
    expect(stored).toHaveLength(start + 3 * perInstance);
    expect(stored.map((l) => l.seq)).toEqual(Array.from({ length: stored.length }, (_, k) => k + 1));
    expect(new Set(results.map((r) => r.event_id)).size).toBe(3 * perInstance);
    const ids = new Set(stored.map((l) => l.event_id));
    for (const r of results) expect(ids.has(r.event_id)).toBe(true);
    const v = new ChainVerifier();
    for (const l of stored) expect(v.push(l)).toBeUndefined();
    expect(await verifyAuditChain(t.database.db)).toMatchObject({ ok: true, count: stored.length });
    await Promise.all(logs.map((l) => l.close()));
  });

  test("the database refuses to change, remove or truncate events", async () => {
    const audit = createAuditLog({ database: t.database, clock: new FakeClock(), log });
    await audit.append({ type: "x.kept" });
    await expectRefused(t.database.db.execute(sql`UPDATE audit_events SET reason = 'forged' WHERE seq = 1`));
    await expectRefused(t.database.db.execute(sql`DELETE FROM audit_events WHERE seq = 1`));
    await expectRefused(t.database.db.execute(sql`TRUNCATE audit_events`));
    await expectRefused(t.database.db.execute(sql`DELETE FROM audit_head`));
    expect(await verifyAuditChain(t.database.db)).toMatchObject({ ok: true });
    await audit.close();
  });

  test("a superuser who disables the trigger and edits an event is caught at that event", async () => {
    const total = (await all(t.database)).length;
    const target = Math.max(1, total - 3);
    await t.database.db.execute(sql`ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only`);
    await t.database.db.execute(sql`UPDATE audit_events SET reason = 'nothing to see' WHERE seq = ${target}`);
    await t.database.db.execute(sql`ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only`);
    const r = await verifyAuditChain(t.database.db);
    expect(r).toMatchObject({ ok: false, verifiedThrough: target - 1, break: { seq: target } });
  });

  test("a field named like a core field slipped into an event's details by hand is caught at that event", async () => {
    // The line shown and verified is the row with its details: a detail cannot hide behind the
    // core column of the same name (prepare refuses such details, so only tampering makes one).
    const lines = await all(t.database);
    const target = lines.at(-1)!.seq;
    await t.database.db.execute(sql`ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only`);
    await t.database.db.execute(
      sql`UPDATE audit_events SET details = details || '{"decision": "DENY"}'::jsonb WHERE seq = ${target}`,
    );
    await t.database.db.execute(sql`ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only`);
    const tampered = (await all(t.database)).at(-1)!;
    expect(tampered.decision).toBe("DENY");
    // Its hash no longer matches: a verifier (or verifyAuditChain, from the first break on) says so.
    expect(hashLine(tampered.prev_hash, tampered)).not.toBe(tampered.hash);
  });

  test("a chain head moved back by hand is caught", async () => {
    const other = await createTestDatabase();
    try {
      const audit = createAuditLog({ database: other.database, clock: new FakeClock(), log });
      const lines = [];
      for (let i = 0; i < 5; i++) lines.push(await audit.append({ type: "x.e" }));
      await audit.close();
      await other.database.db.execute(
        sql`UPDATE audit_head SET seq = 3, hash = ${lines[2]!.hash} WHERE id = 1`,
      );
      expect(await verifyAuditChain(other.database.db)).toMatchObject({
        ok: false,
        break: { seq: 4, problem: expect.stringContaining("after the recorded chain head") },
      });
    } finally {
      await other.cleanup();
    }
  });

  test("removing the newest events is caught against the recorded head", async () => {
    const other = await createTestDatabase();
    try {
      const audit = createAuditLog({ database: other.database, clock: new FakeClock(), log });
      for (let i = 0; i < 5; i++) await audit.append({ type: "x.e" });
      await audit.close();
      await other.database.db.execute(sql`ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only`);
      await other.database.db.execute(sql`DELETE FROM audit_events WHERE seq >= 4`);
      expect(await verifyAuditChain(other.database.db)).toMatchObject({
        ok: false,
        verifiedThrough: 3,
        break: { seq: 4 },
      });
    } finally {
      await other.cleanup();
    }
  });
});

/** A pool of one connection that records the text of every statement sent through it. */
class RecordingPool extends pg.Pool {
  readonly statements: string[] = [];
  override query(...args: unknown[]): never {
    const q = args[0];
    this.statements.push(typeof q === "string" ? q : String((q as { text?: string }).text));
    return (super.query as (...a: unknown[]) => unknown).apply(this, args) as never;
  }
}

const NO_FLUSH = "set_config('synchronous_commit', 'off', true)";

describe.skipIf(ENGINE !== "postgres")("audit durability modes (postgres)", () => {
  let db: Awaited<ReturnType<typeof createPostgresDatabase>>;
  let pool: RecordingPool;
  let database: Database;
  beforeAll(async () => {
    db = await createPostgresDatabase();
    pool = new RecordingPool({ connectionString: db.url, max: 1 });
    database = postgresDatabase(pool, db.url, log);
    const { migrate } = await import("../../src/db/migrate.js");
    await migrate(database);
  });
  afterAll(async () => {
    await database?.close();
    await db?.drop();
  });

  const deny = { type: "gateway.denied", agent: "a", decision: "DENY", reason: "no" };
  const allow = { type: "gateway.allowed", agent: "a", decision: "ALLOW", reason: "yes" };
  /** Whether each audit batch written since `from` skipped the disk flush, in order. */
  const batchesSince = (from: number) =>
    pool.statements
      .slice(from)
      .filter((s) => s.includes("UPDATE audit_head"))
      .map((s) => s.includes(NO_FLUSH));

  async function appendWith(durability: AuditDurability, inputs: (typeof deny)[][]) {
    const audit = createAuditLog({ database, clock: new FakeClock(), log, durability });
    const from = pool.statements.length;
    // Each group is queued while the previous one is being written, so it becomes one batch.
    const pending: Promise<unknown>[] = [];
    for (const group of inputs) pending.push(...group.map((i) => audit.append(i)));
    await Promise.all(pending);
    await audit.close();
    return batchesSince(from);
  }

  test("sync (the default): every batch waits for the disk flush, DENY lines too", async () => {
    expect(await appendWith("sync", [[deny], [deny, allow]])).toEqual([false, false]);
  });

  test("async-deny: a batch of DENY lines skips the flush; a batch with an ALLOW line waits for it", async () => {
    expect(await appendWith("async-deny", [[deny], [deny, allow]])).toEqual([true, false]);
    expect(await appendWith("async-deny", [[allow], [{ ...allow, decision: null as never }]])).toEqual([
      false,
      false,
    ]);
  });

  test("a pair (a decision and its outcome, one batch) skips the flush only when both lines may", async () => {
    const pairWith = async (durability: AuditDurability, decision: string) => {
      const audit = createAuditLog({ database, clock: new FakeClock(), log, durability });
      const from = pool.statements.length;
      await audit.appendPair({ ...deny, decision }, () => ({ type: "x.outcome", decision }));
      await audit.close();
      return batchesSince(from);
    };
    expect(await pairWith("async-deny", "DENY")).toEqual([true]);
    expect(await pairWith("async-deny", "ALLOW")).toEqual([false]);
    expect(await pairWith("async", "ALLOW")).toEqual([true]);
    expect(await pairWith("sync", "DENY")).toEqual([false]);
  });

  test("async: every group-committed batch skips the flush; the setting ends with its transaction", async () => {
    expect(await appendWith("async", [[allow], [deny, allow]])).toEqual([true, true]);
    // The one connection of the pool is back to the server's setting: nothing else written on it
    // (a policy revision, an approval) is committed without the flush.
    const shown = await (pool as pg.Pool).query<{ synchronous_commit: string }>("SHOW synchronous_commit");
    expect(shown.rows[0]?.synchronous_commit).toBe("on");
    // The lines written either way form one chain.
    expect(await verifyAuditChain(database.db)).toMatchObject({ ok: true, count: 19 });
  });
});

describe.skipIf(ENGINE !== "pglite")("audit durability on the embedded database", () => {
  test("only sync: an asynchronous mode is refused (no background writer would bound its loss)", async () => {
    const t = await createTestDatabase();
    try {
      expect(() =>
        createAuditLog({ database: t.database, clock: new FakeClock(), log, durability: "async" }),
      ).toThrow("audit durability async needs PostgreSQL");
      const audit = createAuditLog({ database: t.database, clock: new FakeClock(), log });
      expect(audit.durability).toBe("sync");
      await audit.close();
    } finally {
      await t.cleanup();
    }
  });
});
