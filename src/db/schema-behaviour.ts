import { bigint, index, pgTable, primaryKey, text, timestamp } from "drizzle-orm/pg-core";

/**
 * Security alerts (a project's `security:` section), one row per alert, with what people did
 * about it from the alert's buttons: acknowledged it, suspended the agent's grants, raised its
 * trust score back. Each action is taken once (the first press wins; later ones are told who).
 */
export const securityAlerts = pgTable(
  "security_alerts",
  {
    id: text("id").primaryKey(),
    project: text("project").notNull(),
    agent: text("agent").notNull(),
    kind: text("kind").notNull(),
    title: text("title").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull(),
    acknowledgedBy: text("acknowledged_by"),
    acknowledgedAt: timestamp("acknowledged_at", { withTimezone: true, mode: "date" }),
    suspendedBy: text("suspended_by"),
    suspendedAt: timestamp("suspended_at", { withTimezone: true, mode: "date" }),
    trustRaisedBy: text("trust_raised_by"),
    trustRaisedAt: timestamp("trust_raised_at", { withTimezone: true, mode: "date" }),
    /** For a break-glass alert: the access request it opened (its review is this alert's acknowledgement). */
    requestId: text("request_id"),
  },
  (t) => [index("security_alerts_agent_idx").on(t.project, t.agent, t.createdAt)],
);

/**
 * What each agent's provider calls moved this month (UTC), per currency, for its pact's
 * `expected_monthly_budget`: added to when a money-moving call succeeded.
 */
export const agentSpend = pgTable(
  "agent_spend",
  {
    project: text("project").notNull(),
    agent: text("agent").notNull(),
    /** YYYY-MM, UTC. */
    month: text("month").notNull(),
    currency: text("currency").notNull(),
    amount: bigint("amount", { mode: "number" }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.project, t.agent, t.month, t.currency] })],
);

/**
 * The idempotency keys whose spending `agent_spend` counted: a retry the provider answers again
 * with the same key moved the money once, and is counted once.
 */
export const agentSpendKeys = pgTable(
  "agent_spend_keys",
  {
    project: text("project").notNull(),
    agent: text("agent").notNull(),
    key: text("key").notNull(),
    at: timestamp("at", { withTimezone: true, mode: "date" }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.project, t.agent, t.key] }), index("agent_spend_keys_at_idx").on(t.at)],
);
