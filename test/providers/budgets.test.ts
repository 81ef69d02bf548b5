import { describe, expect, test } from "vitest";
import type { BudgetDef } from "../../src/policy/types.js";
import { budgetRefusal, budgetsFor, type Charge, periodStart } from "../../src/providers/budgets.js";

const charge = (over: Partial<Charge> = {}): Charge => ({
  project: "project-support",
  agent: "bot-1",
  currency: "EUR",
  amount: 1200,
  session: undefined,
  eventId: "evt_1",
  idempotencyKey: undefined,
  ...over,
});
const budget = (over: Partial<BudgetDef> = {}): BudgetDef => ({
  id: "daily",
  agents: undefined,
  period: "day",
  currency: "EUR",
  limit: 10_000,
  ...over,
});

/** The budget rules, without a database: which budgets count, and why a charge does not fit. */
describe("budgets (pure)", () => {
  test.each([
    { name: "the project's, in the charge's currency", b: budget(), counts: true },
    { name: "not one in another currency", b: budget({ currency: "USD" }), counts: false },
    { name: "an agent's own", b: budget({ agents: ["bot-1"] }), counts: true },
    { name: "not another agent's", b: budget({ agents: ["bot-2"] }), counts: false },
  ])("a charge counts against $name", ({ b, counts }) => {
    expect(budgetsFor([b], charge())).toEqual(counts ? [b] : []);
  });

  test.each([
    { name: "fits exactly", b: budget(), used: 8_800, c: charge(), want: undefined },
    {
      name: "the project's day is spent",
      b: budget(),
      used: 9_000,
      c: charge(),
      want: "budget daily: project-support's EUR 90.00 of EUR 100.00 is spent this day; this call (EUR 12.00) would exceed it; EUR 10.00 left",
    },
    {
      name: "an agent's week, overspent already: nothing left, never a negative",
      b: budget({ id: "wk", period: "week", agents: ["bot-1"], limit: 1_000 }),
      used: 1_500,
      c: charge(),
      want: "budget wk: bot-1's EUR 15.00 of EUR 10.00 is spent this week; this call (EUR 12.00) would exceed it; EUR 0.00 left",
    },
    {
      name: "a session budget without a session",
      b: budget({ id: "s", period: "session" }),
      used: 0,
      c: charge(),
      want: "budget s caps spending per session: send the session's id as X-Butler-Session (over MCP, call within an MCP session)",
    },
    {
      name: "a session budget, counted per agent",
      b: budget({ id: "s", period: "session", limit: 1_000 }),
      used: 0,
      c: charge({ session: "sess-1" }),
      want: "budget s: bot-1's EUR 0.00 of EUR 10.00 is spent this session; this call (EUR 12.00) would exceed it; EUR 10.00 left",
    },
  ])("$name", ({ b, used, c, want }) => {
    expect(budgetRefusal(b, used, c)).toBe(want);
  });

  test.each([
    { period: "day" as const, now: "2026-05-06T17:42:11Z", want: "2026-05-06T00:00:00.000Z" },
    { period: "week" as const, now: "2026-05-06T17:42:11Z", want: "2026-05-04T00:00:00.000Z" },
    { period: "week" as const, now: "2026-05-10T23:59:59Z", want: "2026-05-04T00:00:00.000Z" },
    { period: "month" as const, now: "2026-05-06T17:42:11Z", want: "2026-05-01T00:00:00.000Z" },
  ])("the $period containing $now starts at $want (UTC, weeks on Monday)", ({ period, now, want }) => {
    expect(periodStart(period, new Date(now)).toISOString()).toBe(want);
  });
});
