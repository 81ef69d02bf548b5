import { and, eq, gte, isNull, sql, sum } from "drizzle-orm";
import type { Clock } from "../clock.js";
import type { Db, Tx } from "../db/client.js";
import { spend } from "../db/schema.js";
import type { BudgetDef } from "../policy/types.js";

/** The start of the UTC calendar period that contains `now` (pure). */
export function periodStart(period: "day" | "week" | "month", now: Date): Date {
  const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
  if (period === "week") d.setUTCDate(d.getUTCDate() - ((d.getUTCDay() + 6) % 7)); // ISO weeks start on Monday
  if (period === "month") d.setUTCDate(1);
  return d;
}

const money = (minor: number, currency: string) => `${currency} ${(minor / 100).toFixed(2)}`;

export interface Charge {
  project: string;
  agent: string;
  currency: string;
  amount: number;
  session: string | undefined;
  eventId: string;
  /** The key the upstream call carries: the same key is the same spending, counted once. */
  idempotencyKey: string | undefined;
}

export type Reservation =
  | { ok: true; id: number | undefined }
  | { ok: false; reason: string; budget: string };

/** The budgets a charge counts against: those of its currency, for every agent or for its own (pure). */
export function budgetsFor(
  budgets: readonly BudgetDef[],
  c: Pick<Charge, "currency" | "agent">,
): BudgetDef[] {
  return budgets.filter(
    (b) => b.currency === c.currency && (b.agents === undefined || b.agents.includes(c.agent)),
  );
}

/**
 * Why a charge does not fit a budget of which `used` is already spent in its period, or
 * undefined when it fits (pure). A per-session budget needs the session's id.
 */
export function budgetRefusal(b: BudgetDef, used: number, c: Charge): string | undefined {
  if (b.period === "session" && !c.session)
    return `budget ${b.id} caps spending per session: send the session's id as X-Butler-Session (over MCP, call within an MCP session)`;
  if (used + c.amount <= b.limit) return undefined;
  const scope = b.period === "session" ? "this session" : `this ${b.period}`;
  const whose = b.agents || b.period === "session" ? `${c.agent}'s` : `${c.project}'s`;
  return `budget ${b.id}: ${whose} ${money(used, c.currency)} of ${money(b.limit, c.currency)} is spent ${scope}; this call (${money(c.amount, c.currency)}) would exceed it; ${money(Math.max(0, b.limit - used), c.currency)} left`;
}

/** What is spent (not released) against a budget in the period that contains `now`, or in the charge's session. */
async function spentAgainst(tx: Tx, b: BudgetDef, c: Charge, now: Date): Promise<number> {
  const where = [
    eq(spend.project, c.project),
    eq(spend.currency, c.currency),
    isNull(spend.releasedAt),
    ...(b.agents ? [eq(spend.agent, c.agent)] : []),
    ...(b.period === "session"
      ? [eq(spend.agent, c.agent), eq(spend.session, c.session!)]
      : [gte(spend.at, periodStart(b.period, now))]),
  ];
  const [row] = await tx
    .select({ used: sum(spend.amount) })
    .from(spend)
    .where(and(...where));
  return Number(row?.used ?? 0);
}

/** Whether a charge with this idempotency key is already counted (and not released). */
async function countedAlready(tx: Tx, c: Charge & { idempotencyKey: string }): Promise<boolean> {
  const [same] = await tx
    .select({ id: spend.id })
    .from(spend)
    .where(
      and(
        eq(spend.project, c.project),
        eq(spend.agent, c.agent),
        eq(spend.idempotencyKey, c.idempotencyKey),
        isNull(spend.releasedAt),
      ),
    );
  return same !== undefined;
}

/**
 * Budgets for money-moving calls. Checking and reserving happen in one transaction under a
 * per-project advisory lock, so concurrent calls (on any instance) cannot both fit in what is
 * left; a call that fails upstream gives its reservation back.
 */
export function createBudgets(deps: { db: Db; clock: Clock }) {
  const { db, clock } = deps;
  return {
    async reserve(budgets: readonly BudgetDef[], c: Charge): Promise<Reservation> {
      const applicable = budgetsFor(budgets, c);
      if (applicable.length === 0) return { ok: true, id: undefined };
      const now = clock.now();
      return db.transaction(async (tx) => {
        await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext(${`butler-spend:${c.project}`}))`);
        // A retry of a call already counted: the provider replays it, the money moves once.
        if (c.idempotencyKey && (await countedAlready(tx, { ...c, idempotencyKey: c.idempotencyKey })))
          return { ok: true as const, id: undefined };
        for (const b of applicable) {
          // No session, no query: the refusal does not depend on what is spent.
          const used = b.period === "session" && !c.session ? 0 : await spentAgainst(tx, b, c, now);
          const reason = budgetRefusal(b, used, c);
          if (reason) return { ok: false as const, budget: b.id, reason };
        }
        const [r] = await tx
          .insert(spend)
          .values({
            project: c.project,
            agent: c.agent,
            currency: c.currency,
            amount: c.amount,
            session: c.session ?? null,
            eventId: c.eventId,
            idempotencyKey: c.idempotencyKey ?? null,
            at: now,
          })
          .returning({ id: spend.id });
        return { ok: true as const, id: r!.id };
      });
    },
    /** Gives a reservation back: the call did not move the money. */
    async release(id: number): Promise<void> {
      await db.update(spend).set({ releasedAt: clock.now() }).where(eq(spend.id, id));
    },
  };
}

export type Budgets = ReturnType<typeof createBudgets>;
