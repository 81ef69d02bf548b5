import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { drift, jaccardDistance, jensenShannon, settleLevel } from "../../src/policy/drift.js";
import { FakeClock } from "../helpers/clock.js";
import { ENGINE } from "../helpers/db.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const POLICY = `project: procurement
agents: [procurement-agent, steady-agent]
grants:
  - service: revolut
    actions: ["transactions:read", "payments:create"]
trust:
  rules:
    - id: drifting-small-amounts
      drift: major
      actions: ["revolut:payments:*"]
      constraints:
        amount: { max: 1000 }
`;

const counts = (o: Record<string, number>) => new Map(Object.entries(o));

describe("drift distances", () => {
  test("Jaccard distance of the tool sets and Jensen-Shannon divergence of the mixes", () => {
    expect(jaccardDistance(counts({ a: 5, b: 1 }), counts({ a: 1, b: 9 }))).toBe(0);
    expect(jaccardDistance(counts({ a: 5 }), counts({ a: 1, b: 1 }))).toBe(0.5);
    expect(jaccardDistance(counts({ a: 5 }), counts({ b: 1 }))).toBe(1);
    expect(jensenShannon(counts({ a: 1 }), counts({ a: 7 }))).toBe(0);
    expect(jensenShannon(counts({ a: 1 }), counts({ b: 1 }))).toBe(1);
    expect(jensenShannon(counts({ a: 90, b: 10 }), counts({ a: 20, b: 80 }))).toBeCloseTo(0.397, 3);
  });

  test("levels: none for the same mix, minor for a modest shift, major for a new tool or a reversed mix", () => {
    expect(drift(counts({ a: 90, b: 10 }), counts({ a: 88, b: 12 })).level).toBe("none");
    expect(drift(counts({ a: 90, b: 10 }), counts({ a: 50, b: 50 })).level).toBe("minor");
    expect(drift(counts({ a: 90, b: 10 }), counts({ a: 20, b: 80 })).level).toBe("major");
    expect(drift(counts({ a: 100 }), counts({ a: 95, c: 5 })).level).toBe("major");
    // Too few calls in a window says nothing.
    expect(drift(counts({ a: 9, b: 1 }), counts({ a: 2, b: 8 })).level).toBe("none");
  });

  test("hysteresis: a level rises at its threshold and falls only once clearly under it", () => {
    const base = counts({ a: 90, b: 10 });
    // Jensen-Shannon about 0.28: under major's 0.3 by less than the margin, over minor's.
    const near = drift(base, counts({ a: 32, b: 68 }));
    expect(near.level).toBe("minor");
    expect(near.jensenShannon).toBeGreaterThan(0.25);
    expect(settleLevel("major", near)).toBe("major");
    expect(settleLevel("none", near)).toBe("minor");
    // Well under: it falls.
    const calm = drift(base, counts({ a: 88, b: 12 }));
    expect(settleLevel("major", calm)).toBe("none");
    // About 0.09, under minor's 0.1 by less than the margin: held; about 0.01: falls.
    expect(settleLevel("minor", drift(base, counts({ a: 60, b: 40 })))).toBe("minor");
    expect(settleLevel("minor", drift(base, counts({ a: 80, b: 20 })))).toBe("none");
  });
});

/** The seed's drift story over HTTP: 90% list / 10% create becoming 20% / 80%. */
describe(`drift detection (${ENGINE})`, () => {
  let s: TestServer;
  const clock = new FakeClock(Date.parse("2026-11-01T09:00:00Z"));
  let agent: string;
  let steady: string;

  beforeAll(async () => {
    s = await startTestServer({ clock, policies: { "procurement.yaml": POLICY } });
    agent = await s.agentToken("procurement-agent", "procurement");
    steady = await s.agentToken("steady-agent", "procurement");
  });
  afterAll(async () => {
    await s?.cleanup();
  });

  async function calls(token: string, list: number, create: number) {
    for (let i = 0; i < list; i++)
      await s.authorize(token, { action: "revolut:transactions:read", resource: "revolut.com/transactions" });
    for (let i = 0; i < create; i++)
      await s.authorize(token, { action: "revolut:payments:create", resource: "revolut.com/pay" });
  }

  test("a shift from 90% list / 10% create to 20% / 80% is major drift, with the distances in the event", async () => {
    await calls(agent, 90, 10);
    await calls(steady, 90, 10);
    clock.advance(2 * 24 * 3600_000);
    // The server's own sweeper computes drift at most once a minute of its clock: one pass now
    // (nothing recent yet), so that it cannot compute it from half of the calls below.
    await s.server.services.usage.sweep();
    await calls(agent, 20, 80);
    await calls(steady, 89, 11);
    const usage = s.server.services.usage;
    await usage.flush();
    await usage.evaluate();
    const lines = await s.events("drift.detected");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      agent: "procurement-agent",
      project: "procurement",
      level: "major",
      previous_level: "none",
      dimension: "tool",
      jaccard: 0,
      baseline_calls: 100,
      recent_calls: 100,
    });
    expect(lines[0]!.jensen_shannon).toBeCloseTo(0.397, 3);
    expect(lines[0]!.shifts).toEqual(
      expect.arrayContaining([
        { value: "revolut:transactions:read", baseline: 0.9, recent: 0.2 },
        { value: "revolut:payments:create", baseline: 0.1, recent: 0.8 },
      ]),
    );
    const shown = JSON.parse(
      (await s.cli(["agents", "show", "procurement-agent", "--project", "procurement", "--json"])).stdout,
    );
    expect(shown.drift).toEqual(
      expect.arrayContaining([expect.objectContaining({ dimension: "tool", level: "major" })]),
    );
    // Computed again with nothing new: the level is unchanged, so no second line (on any instance).
    await usage.evaluate();
    expect(await s.events("drift.detected")).toHaveLength(1);
    // A trust rule on drift: the drifting agent's very next payment is held to it, the steady one's is not.
    const pay = (token: string) =>
      s.authorize(token, {
        action: "revolut:payments:create",
        resource: "revolut.com/pay",
        params: { amount: 5000, currency: "EUR" },
      });
    const limited = await pay(agent);
    expect(limited.body).toMatchObject({ decision: "DENY", code: "constraint_failed" });
    expect(limited.body.reason).toBe(
      "trust rule drifting-small-amounts of procurement: procurement-agent's drift is major (at least major), so amount 5000 exceeds max 1000",
    );
    expect((await pay(steady)).body.decision).toBe("ALLOW");
  });

  test("actions made up to flood the counts count as one value past 200 per agent and hour", async () => {
    for (let i = 0; i < 230; i++) await s.authorize(steady, { action: `made:up${i}`, resource: "x" });
    const usage = s.server.services.usage;
    await usage.flush();
    const { usageCounts } = await import("../../src/db/schema.js");
    const { and, eq } = await import("drizzle-orm");
    const rows = await s.server.services.database.db
      .select()
      .from(usageCounts)
      .where(and(eq(usageCounts.agent, "steady-agent"), eq(usageCounts.dimension, "tool")));
    const values = new Set(rows.map((r) => r.value));
    // The two tools it used this hour, 198 made-up ones, and (other) for the other 32.
    expect(values.size).toBe(201);
    expect(rows.find((r) => r.value === "(other)")?.count).toBe(32);
  });
});
