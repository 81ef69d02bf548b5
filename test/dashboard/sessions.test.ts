import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { createAuditLog } from "../../src/audit/audit-log.js";
import { createApproverTokens } from "../../src/butler/approver-tokens.js";
import { createDashboardSessions, csrfMatches } from "../../src/dashboard/sessions.js";
import { dashboardSessions } from "../../src/db/schema.js";
import { createLogger } from "../../src/logger.js";
import { FakeClock } from "../helpers/clock.js";
import { createTestDatabase, ENGINE, type TestDatabase } from "../helpers/db.js";

/** Dashboard sessions: what a cookie is worth, for how long, and what is kept. */
describe(`dashboard sessions (${ENGINE})`, () => {
  let t: TestDatabase;
  const clock = new FakeClock("2026-05-01T12:00:00Z");
  let sessions: ReturnType<typeof createDashboardSessions>;
  let tokens: ReturnType<typeof createApproverTokens>;

  beforeAll(async () => {
    t = await createTestDatabase();
    const audit = createAuditLog({ database: t.database, clock, log: createLogger("silent") });
    tokens = createApproverTokens({ db: t.database.db, audit, clock });
    sessions = createDashboardSessions({
      db: t.database.db,
      audit,
      clock,
      approverTokens: tokens,
      ttlSeconds: 3600,
    });
  });
  afterAll(() => t?.cleanup());

  test("a token signs in for the session's lifetime; only the cookie's hash is stored; auditors keep their role", async () => {
    const { token } = await tokens.create("jordan", "test");
    const { cookie, session } = await sessions.signInWithToken(token);
    expect(session).toMatchObject({ approver: "jordan", role: "approver" });
    const rows = await t.database.db.select().from(dashboardSessions);
    expect(JSON.stringify(rows)).not.toContain(cookie);
    expect(await sessions.lookup(cookie)).toMatchObject({ approver: "jordan", csrf: session.csrf });
    expect(csrfMatches(session, session.csrf)).toBe(true);
    expect(csrfMatches(session, `${session.csrf.slice(0, -1)}x`)).toBe(false);
    expect(csrfMatches(session, undefined)).toBe(false);
    clock.advance(3600_000);
    expect(await sessions.lookup(cookie)).toBeUndefined();

    const sam = await tokens.create("sam", "test", "auditor");
    expect(sam.token).toMatch(/^bau_/);
    expect((await sessions.signInWithToken(sam.token)).session.role).toBe("auditor");
    // An auditor's token is never an approver's, wherever approvers are checked.
    expect(await tokens.authenticate(sam.token)).toBeUndefined();
    await expect(sessions.signInWithToken("bap_not-a-real-token")).rejects.toThrow(
      /not a valid approver's or auditor's token/,
    );
  });

  test("a one-time link works once and not after 15 minutes", async () => {
    const a = await sessions.createSignInCode("jordan", "test");
    expect((await sessions.signInWithCode(a.code)).session.approver).toBe("jordan");
    await expect(sessions.signInWithCode(a.code)).rejects.toThrow(/used already, it expired/);
    const b = await sessions.createSignInCode("jordan", "test");
    clock.advance(15 * 60_000);
    await expect(sessions.signInWithCode(b.code)).rejects.toThrow(/used already, it expired/);
  });

  test("signing out ends the session at once; ended sessions are forgotten a day later", async () => {
    const { token } = await tokens.create("alex", "test");
    const live = await sessions.signInWithToken(token);
    const out = await sessions.signInWithToken(token);
    await sessions.signOut(out.cookie, out.session);
    expect(await sessions.lookup(out.cookie)).toBeUndefined();
    expect(await sessions.lookup(live.cookie)).toBeDefined();
    const stored = async () => (await t.database.db.select().from(dashboardSessions)).length;
    expect(await stored()).toBe(5);
    // A day and a second after sign-out: the signed-out session and the first one (expired an hour
    // before that) are forgotten; the three that expired less than a day ago are kept.
    clock.advance(86_400_000 + 1000);
    expect(await sessions.purge()).toBe(2);
    expect(await stored()).toBe(3);
    clock.advance(86_400_000);
    expect(await sessions.purge()).toBe(3);
    expect(await stored()).toBe(0);
  });
});
