import { sql } from "drizzle-orm";
import {
  bigint,
  bigserial,
  boolean,
  check,
  index,
  integer,
  jsonb,
  pgTable,
  smallint,
  text,
  timestamp,
  uniqueIndex,
} from "drizzle-orm/pg-core";

const createdAt = () => timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow();

/**
 * Every version of every project's baseline policy, numbered per project. The newest revision of a
 * project is the one in force (unless it is `retired`); older ones are kept for history.
 */
export const policyRevisions = pgTable(
  "policy_revisions",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    project: text("project").notNull(),
    revision: integer("revision").notNull(),
    /** sha256 (hex) of `yaml`. */
    contentHash: text("content_hash").notNull(),
    /** Where it came from, e.g. `file:policies/project-billing.yaml`. */
    source: text("source").notNull(),
    yaml: text("yaml").notNull(),
    /** True when the project's file was removed: the project has no policy and denies everything. */
    retired: boolean("retired").notNull().default(false),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex("policy_revisions_project_revision_uq").on(t.project, t.revision)],
);

/** Bearer tokens of agents; only a hash of each token is kept. */
export const agentTokens = pgTable(
  "agent_tokens",
  {
    id: text("id").primaryKey(),
    agent: text("agent").notNull(),
    project: text("project").notNull(),
    /** sha256 (hex) of the whole token. */
    tokenHash: text("token_hash").notNull(),
    createdAt: createdAt(),
    revokedAt: timestamp("revoked_at", { withTimezone: true, mode: "date" }),
  },
  (t) => [
    uniqueIndex("agent_tokens_token_hash_uq").on(t.tokenHash),
    index("agent_tokens_agent_idx").on(t.project, t.agent),
  ],
);

/**
 * The audit log: append-only (a trigger refuses UPDATE, DELETE and TRUNCATE) and hash-chained.
 * The exact meaning of each column and of `hash` is in docs/audit.md.
 */
export const auditEvents = pgTable(
  "audit_events",
  {
    seq: bigint("seq", { mode: "number" }).primaryKey(),
    eventId: text("event_id").notNull(),
    ts: timestamp("ts", { withTimezone: true, mode: "date", precision: 3 }).notNull(),
    type: text("type").notNull(),
    agent: text("agent"),
    project: text("project"),
    action: text("action"),
    resource: text("resource"),
    decision: text("decision"),
    reason: text("reason"),
    httpStatus: integer("http_status"),
    /** Further fields of the event, exported at the top level of its JSONL line. */
    details: jsonb("details").$type<Record<string, unknown>>().notNull(),
    prevHash: text("prev_hash").notNull(),
    hash: text("hash").notNull(),
  },
  // Few indexes on purpose: each one is paid on every decision. Exports by agent use the second;
  // other filters scan in sequence order.
  (t) => [
    uniqueIndex("audit_events_event_id_uq").on(t.eventId),
    index("audit_events_agent_seq_idx").on(t.agent, t.seq),
  ],
);

/** The head of the audit chain: one row, locked by every append so that the chain never forks. */
export const auditHead = pgTable(
  "audit_head",
  {
    id: smallint("id").primaryKey(),
    seq: bigint("seq", { mode: "number" }).notNull(),
    hash: text("hash").notNull(),
  },
  (t) => [check("audit_head_single_row", sql`${t.id} = 1`)],
);
