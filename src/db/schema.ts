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
  primaryKey,
  smallint,
  text,
  timestamp,
  uniqueIndex,
} from "drizzle-orm/pg-core";
import type { BlastRadius } from "../policy/blast-radius.js";

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
    /**
     * The effective policy's text, for revisions stored by a new file. Null for revisions stored
     * by a grant change (an approval, revocation or expiry) or a retirement: their text is the
     * baseline plus the grants whose `added_revision`/`removed_revision` span this revision, put
     * together when read, so an approval stores a few bytes however many grants are in force.
     */
    yaml: text("yaml"),
    /** True when the project's file was removed: the project has no policy and denies everything. */
    retired: boolean("retired").notNull().default(false),
    /**
     * The policy file's text this revision was built from; `yaml` is the effective policy: this
     * baseline plus the grants in force, each added as a grant with its `expires`.
     */
    baseline: text("baseline").notNull().default(""),
    /** sha256 (hex) of the effective `yaml`. */
    effectiveHash: text("effective_hash").notNull().default(""),
    /** Why this revision exists when it is not a new file: `grant:req_…`, `revoke:req_…`, `expiry:…`. */
    cause: text("cause"),
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

/**
 * Statuses of an access request: pending until approved, denied, expired (nobody decided in time),
 * canceled (by the agent) or superseded (at a decision it no longer matched the policy in force or
 * what was filed, so nothing was granted; the agent asks again).
 */
export const REQUEST_STATUSES = [
  "pending",
  "approved",
  "denied",
  "expired",
  "canceled",
  "superseded",
] as const;
export type RequestStatus = (typeof REQUEST_STATUSES)[number];

/** An agent's request for access, with the Butler's proposal (the scoped grant and the policy diff). */
export const accessRequests = pgTable(
  "access_requests",
  {
    id: text("id").primaryKey(),
    project: text("project").notNull(),
    agent: text("agent").notNull(),
    tokenId: text("token_id").notNull(),
    status: text("status").$type<RequestStatus>().notNull(),
    /** The call the grant will cover exactly. */
    action: text("action").notNull(),
    resource: text("resource").notNull(),
    branch: text("branch"),
    /** Agent-written; untrusted. */
    reason: text("reason").notNull(),
    denialEventId: text("denial_event_id"),
    requestedTtlSeconds: integer("requested_ttl_seconds").notNull(),
    riskTier: text("risk_tier").$type<"low" | "medium" | "high">().notNull(),
    approvalsRequired: integer("approvals_required").notNull(),
    /** Unified diff of the effective policy before and after, and the policy hashes it was made from. */
    proposalDiff: text("proposal_diff").notNull(),
    proposalBaseRevision: integer("proposal_base_revision").notNull(),
    proposalHash: text("proposal_hash").notNull(),
    /** sha256 of project, agent, action, resource and branch: one pending request per call. */
    dedupeKey: text("dedupe_key").notNull(),
    createdAt: createdAt(),
    /** When the request expires if nobody decides. */
    expiresAt: timestamp("expires_at", { withTimezone: true, mode: "date" }).notNull(),
    decidedAt: timestamp("decided_at", { withTimezone: true, mode: "date" }),
    decidedBy: text("decided_by"),
    decidedVia: text("decided_via"),
    decisionReason: text("decision_reason"),
    grantedTtlSeconds: integer("granted_ttl_seconds"),
    /** Reminders of the pending request (the last one's time, their count) and its escalation's time. */
    remindedAt: timestamp("reminded_at", { withTimezone: true, mode: "date" }),
    remindersSent: integer("reminders_sent").notNull().default(0),
    escalatedAt: timestamp("escalated_at", { withTimezone: true, mode: "date" }),
    /** Break-glass: the person who opened it (no approvers asked), and the second person who reviewed it. */
    breakGlassBy: text("break_glass_by"),
    breakGlassReviewedBy: text("break_glass_reviewed_by"),
    breakGlassReviewedAt: timestamp("break_glass_reviewed_at", { withTimezone: true, mode: "date" }),
    /** Approve and remember: who asked to make the grant a rule of the file, and when and where it was written. */
    rememberedBy: jsonb("remembered_by").$type<string[]>().notNull().default([]),
    rememberedAt: timestamp("remembered_at", { withTimezone: true, mode: "date" }),
    rememberedTo: text("remembered_to"),
    /** A grant asked for a resource glob (covering `resource`) instead of `resource` exactly; and its blast radius. */
    resourceGlob: text("resource_glob"),
    blastRadius: jsonb("blast_radius").$type<BlastRadius>(),
    /** `grant`: a time-bound policy grant; `one_shot`: exactly one call, once (require_approval). */
    kind: text("kind").$type<"grant" | "one_shot">().notNull().default("grant"),
    /** For one_shot: the call it is bound to (sha256 of action, resource, branch and params). */
    callHash: text("call_hash"),
    /** For one_shot: the call's parameters, exactly (the approval is bound to them). Agent-written; untrusted. */
    callParams: jsonb("call_params").$type<Record<string, unknown>>(),
    /**
     * For one_shot, when the project's data_protection redacts something in them: the parameters as
     * shown (API, cards, dashboard, A2A), with those values replaced by `[redacted:<kind>]`.
     */
    callParamsShown: jsonb("call_params_shown").$type<Record<string, unknown>>(),
    /** For one_shot: provider and operation, when the call goes through the gateway. */
    callOperation: text("call_operation"),
    /** For one_shot in the call path: the idempotency key the approved call is sent with, always. */
    idempotencyKey: text("idempotency_key"),
    /**
     * The `access_request.filed` audit event: what was filed, as the hash chain keeps it. Every
     * approval compares the row with it, so a row edited in the database is never granted.
     */
    filedEventId: text("filed_event_id"),
  },
  (t) => [
    uniqueIndex("access_requests_pending_uq").on(t.dedupeKey).where(sql`${t.status} = 'pending'`),
    index("access_requests_status_idx").on(t.status, t.expiresAt),
    index("access_requests_agent_idx").on(t.project, t.agent, t.createdAt),
  ],
);

/** One approver's verdict on a request; an approver counts once. */
export const requestReviews = pgTable(
  "request_reviews",
  {
    requestId: text("request_id").notNull(),
    approver: text("approver").notNull(),
    verdict: text("verdict").$type<"approve" | "deny">().notNull(),
    channel: text("channel").notNull(),
    ttlSeconds: integer("ttl_seconds"),
    createdAt: createdAt(),
    /**
     * The `access_request.approval_recorded` audit event of an approval that did not yet decide:
     * the final approval counts it only if the hash chain has it as recorded.
     */
    eventId: text("event_id"),
  },
  (t) => [uniqueIndex("request_reviews_uq").on(t.requestId, t.approver)],
);

/** Time-limited grants from approved requests (the grant id is the request id). */
export const grants = pgTable(
  "grants",
  {
    id: text("id").primaryKey(),
    project: text("project").notNull(),
    agent: text("agent").notNull(),
    action: text("action").notNull(),
    resource: text("resource").notNull(),
    branch: text("branch"),
    /** The resource glob the grant names, when it was asked for one (`resource` is then the denied call's). */
    resourceGlob: text("resource_glob"),
    approvedBy: jsonb("approved_by").$type<string[]>().notNull(),
    createdAt: createdAt(),
    expiresAt: timestamp("expires_at", { withTimezone: true, mode: "date" }).notNull(),
    revokedAt: timestamp("revoked_at", { withTimezone: true, mode: "date" }),
    revokedBy: text("revoked_by"),
    /** Set by the sweeper once `grant.expired` is recorded. */
    expiryRecordedAt: timestamp("expiry_recorded_at", { withTimezone: true, mode: "date" }),
    /** The revision that put this grant in force (null until stored, in the same transaction; 0: before tracking). */
    addedRevision: integer("added_revision"),
    /** The revision that took it out (revoked); null while it is in (0: revoked before tracking). */
    removedRevision: integer("removed_revision"),
  },
  (t) => [
    index("grants_project_idx").on(t.project, t.expiresAt),
    // What the next revision must stamp: found without reading the project's other grants.
    index("grants_unstamped_idx")
      .on(t.project)
      .where(
        sql`${t.addedRevision} IS NULL OR (${t.revokedAt} IS NOT NULL AND ${t.removedRevision} IS NULL)`,
      ),
  ],
);

/**
 * Single-use grants from approved one-shot requests: exactly one call (by its hash), once, before
 * `expires_at`. Used with `UPDATE ... WHERE used_at IS NULL`, so two racing calls cannot both use it.
 */
export const singleUseGrants = pgTable(
  "single_use_grants",
  {
    /** The access request's id. */
    id: text("id").primaryKey(),
    project: text("project").notNull(),
    agent: text("agent").notNull(),
    action: text("action").notNull(),
    resource: text("resource").notNull(),
    callHash: text("call_hash").notNull(),
    idempotencyKey: text("idempotency_key"),
    approvedBy: jsonb("approved_by").$type<string[]>().notNull(),
    createdAt: createdAt(),
    expiresAt: timestamp("expires_at", { withTimezone: true, mode: "date" }).notNull(),
    usedAt: timestamp("used_at", { withTimezone: true, mode: "date" }),
    revokedAt: timestamp("revoked_at", { withTimezone: true, mode: "date" }),
    revokedBy: text("revoked_by"),
  },
  (t) => [index("single_use_grants_call_idx").on(t.project, t.agent, t.callHash)],
);

/** Bearer tokens of approvers (people); only a hash is kept. */
export const approverTokens = pgTable(
  "approver_tokens",
  {
    id: text("id").primaryKey(),
    approver: text("approver").notNull(),
    tokenHash: text("token_hash").notNull(),
    /** `approver`: decides requests of the projects naming them; `auditor`: reads everything, decides nothing. */
    role: text("role").$type<"approver" | "auditor">().notNull().default("approver"),
    createdAt: createdAt(),
    revokedAt: timestamp("revoked_at", { withTimezone: true, mode: "date" }),
  },
  (t) => [uniqueIndex("approver_tokens_hash_uq").on(t.tokenHash)],
);

/**
 * MCP sessions (src/mcp/session-repo.ts): stored so that any instance serves any session. Only the
 * session id's hash is kept; the token that opened it is the only one that may use it.
 */
export const mcpSessions = pgTable(
  "mcp_sessions",
  {
    idHash: text("id_hash").primaryKey(),
    tokenId: text("token_id").notNull(),
    agent: text("agent").notNull(),
    project: text("project").notNull(),
    createdAt: createdAt(),
    expiresAt: timestamp("expires_at", { withTimezone: true, mode: "date" }).notNull(),
    endedAt: timestamp("ended_at", { withTimezone: true, mode: "date" }),
  },
  (t) => [index("mcp_sessions_expiry_idx").on(t.expiresAt)],
);

/** Tool definitions of MCP servers behind Butler, pinned when first seen; a changed one waits for a person (providers/mcp-pins.ts). */
export const mcpToolPins = pgTable(
  "mcp_tool_pins",
  {
    server: text("server").notNull(),
    tool: text("tool").notNull(),
    pinnedHash: text("pinned_hash").notNull(),
    pinned: jsonb("pinned").$type<Record<string, unknown>>().notNull(),
    pinnedAt: timestamp("pinned_at", { withTimezone: true, mode: "date" }).notNull(),
    /** Who pinned it: `first-seen`, or the approver who approved a changed definition. */
    pinnedBy: text("pinned_by").notNull(),
    /** The newest definition seen that differs from the pinned one, waiting for a person. */
    changedHash: text("changed_hash"),
    changed: jsonb("changed").$type<Record<string, unknown>>(),
    changedAt: timestamp("changed_at", { withTimezone: true, mode: "date" }),
    /** Changed definitions audited since the last approval (each once). */
    changedSeen: jsonb("changed_seen").$type<string[]>().notNull().default([]),
  },
  (t) => [primaryKey({ columns: [t.server, t.tool] })],
);

/** Rate-limit counters per limit, agent (and action) and fixed window (gateway/rate-limits.ts); deleted after `expires_at`. */
export const rateCounts = pgTable(
  "rate_counts",
  {
    key: text("key").notNull(),
    /** The window's start, in ms since the epoch. */
    windowStart: bigint("window_start", { mode: "number" }).notNull(),
    count: integer("count").notNull(),
    expiresAt: timestamp("expires_at", { withTimezone: true, mode: "date" }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.key, t.windowStart] }), index("rate_counts_expiry_idx").on(t.expiresAt)],
);

/** How often each agent used each tool (and operation group) per hour, added in batches, for drift (gateway/usage.ts). */
export const usageCounts = pgTable(
  "usage_counts",
  {
    project: text("project").notNull(),
    agent: text("agent").notNull(),
    /** `tool` (an MCP tool name, or the action) or `group` (an operation group). */
    dimension: text("dimension").notNull(),
    value: text("value").notNull(),
    /** The hour, in ms since the epoch. */
    bucketStart: bigint("bucket_start", { mode: "number" }).notNull(),
    count: integer("count").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.project, t.agent, t.dimension, t.value, t.bucketStart] }),
    index("usage_counts_bucket_idx").on(t.bucketStart),
  ],
);

/** Each agent's drift level as last computed, per dimension: a `drift.detected` line is written when it changes. */
export const agentDrift = pgTable(
  "agent_drift",
  {
    project: text("project").notNull(),
    agent: text("agent").notNull(),
    dimension: text("dimension").notNull(),
    level: text("level").$type<"none" | "minor" | "major">().notNull(),
    computedAt: timestamp("computed_at", { withTimezone: true, mode: "date" }).notNull(),
    numbers: jsonb("numbers").$type<Record<string, unknown>>().notNull(),
  },
  (t) => [primaryKey({ columns: [t.project, t.agent, t.dimension] })],
);

/** Agents' trust scores (projects with a `trust:` section): changed only by incidents, each audited. */
export const agentTrust = pgTable(
  "agent_trust",
  {
    project: text("project").notNull(),
    agent: text("agent").notNull(),
    score: integer("score").notNull(),
    updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.project, t.agent] })],
);

/** Behavioural pacts set through the admin API, as revisions per agent; the newest is in force. */
export const agentPacts = pgTable(
  "agent_pacts",
  {
    project: text("project").notNull(),
    agent: text("agent").notNull(),
    revision: integer("revision").notNull(),
    /** The pact as given (the policy's `pacts:` entry format), or null: the policy's pact applies again. */
    pact: jsonb("pact").$type<Record<string, unknown>>(),
    setBy: text("set_by").notNull(),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.project, t.agent, t.revision] })],
);

/** Dashboard sign-ins: a cookie's hash, who it is, and the CSRF token its pages carry. */
export const dashboardSessions = pgTable(
  "dashboard_sessions",
  {
    /** sha256 of the cookie value; the value itself is only in the browser. */
    idHash: text("id_hash").primaryKey(),
    approver: text("approver").notNull(),
    role: text("role").$type<"approver" | "auditor">().notNull(),
    csrf: text("csrf").notNull(),
    createdAt: createdAt(),
    expiresAt: timestamp("expires_at", { withTimezone: true, mode: "date" }).notNull(),
    revokedAt: timestamp("revoked_at", { withTimezone: true, mode: "date" }),
  },
  (t) => [index("dashboard_sessions_expiry_idx").on(t.expiresAt)],
);

/**
 * Work to do after a commit (notify an agent, post or update a card), written in the same
 * transaction as the state it follows from, and delivered at least once, in order per `key`.
 */
export const outbox = pgTable(
  "outbox",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    topic: text("topic").notNull(),
    key: text("key").notNull(),
    payload: jsonb("payload").$type<Record<string, unknown>>().notNull(),
    attempts: integer("attempts").notNull().default(0),
    nextAttemptAt: timestamp("next_attempt_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    createdAt: createdAt(),
    deliveredAt: timestamp("delivered_at", { withTimezone: true, mode: "date" }),
    failedAt: timestamp("failed_at", { withTimezone: true, mode: "date" }),
    lastError: text("last_error"),
  },
  (t) => [
    index("outbox_pending_idx")
      .on(t.key, t.id)
      .where(sql`${t.deliveredAt} IS NULL AND ${t.failedAt} IS NULL`),
  ],
);

/** Approval cards posted to chat channels, so that a decision made anywhere updates them all. */
export const postedCards = pgTable(
  "posted_cards",
  {
    requestId: text("request_id").notNull(),
    channel: text("channel").notNull(),
    chatId: text("chat_id").notNull(),
    messageId: text("message_id").notNull(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex("posted_cards_uq").on(t.requestId, t.channel, t.chatId)],
);

/**
 * Chat accounts bound to approvers by the approvers themselves (Telegram deep links), in addition
 * to the identities a policy file names.
 */
export const chatBindings = pgTable(
  "chat_bindings",
  {
    channel: text("channel").notNull(),
    userId: text("user_id").notNull(),
    approver: text("approver").notNull(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex("chat_bindings_uq").on(t.channel, t.userId)],
);

/** One-time codes that bind the chat account which presents them to an approver. */
export const linkCodes = pgTable("link_codes", {
  /** sha256 of the code. */
  codeHash: text("code_hash").primaryKey(),
  approver: text("approver").notNull(),
  channel: text("channel").notNull(),
  createdAt: createdAt(),
  expiresAt: timestamp("expires_at", { withTimezone: true, mode: "date" }).notNull(),
  usedAt: timestamp("used_at", { withTimezone: true, mode: "date" }),
  usedBy: text("used_by"),
});

/**
 * Provider credentials stored by `butler credentials set`, encrypted with AES-256-GCM under
 * BUTLER_MASTER_KEY (the name is authenticated data, so a ciphertext cannot be moved to another
 * name). `key_id` tells which master key sealed it.
 */
export const credentials = pgTable("credentials", {
  name: text("name").primaryKey(),
  keyId: text("key_id").notNull(),
  iv: text("iv").notNull(),
  ciphertext: text("ciphertext").notNull(),
  tag: text("tag").notNull(),
  createdAt: createdAt(),
  updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  updatedBy: text("updated_by").notNull(),
});

/**
 * Money moved through the gateway, for budgets: a row is reserved (in the transaction that
 * checks the budget) before the upstream call and released if the call did not go through.
 */
export const spend = pgTable(
  "spend",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    project: text("project").notNull(),
    agent: text("agent").notNull(),
    currency: text("currency").notNull(),
    amount: bigint("amount", { mode: "number" }).notNull(),
    session: text("session"),
    /** The decision that allowed the call. */
    eventId: text("event_id").notNull(),
    /** The call's idempotency key: a retry with the same key is the same spending. */
    idempotencyKey: text("idempotency_key"),
    at: timestamp("at", { withTimezone: true, mode: "date" }).notNull(),
    releasedAt: timestamp("released_at", { withTimezone: true, mode: "date" }),
  },
  (t) => [index("spend_project_idx").on(t.project, t.currency, t.at)],
);

/**
 * Provider webhook events, once each: the key is claimed in the transaction that writes the
 * event's `webhook.received` audit line, so a replay (or a second instance receiving the same
 * event at the same moment) finds it taken and runs nothing. `event_key` is `id:<the provider's
 * event id>` when the signed body has a top-level `id` (Stripe's `evt_…`), else
 * `sha256:<SHA-256 of the body>` (Revolut's events carry no id of their own).
 */
export const webhookEvents = pgTable(
  "webhook_events",
  {
    provider: text("provider").notNull(),
    eventKey: text("event_key").notNull(),
    /** The `webhook.received` audit line of its first delivery. */
    receivedEventId: text("received_event_id"),
    receivedAt: timestamp("received_at", { withTimezone: true, mode: "date" }).notNull(),
    /** Set when its reactions have run (at once when none applies). */
    reactionsDoneAt: timestamp("reactions_done_at", { withTimezone: true, mode: "date" }),
    /** Until when the instance that claimed it is running its reactions; a later delivery takes over after. */
    claimedUntil: timestamp("claimed_until", { withTimezone: true, mode: "date" }).notNull(),
  },
  (t) => [primaryKey({ name: "webhook_events_pk", columns: [t.provider, t.eventKey] })],
);
export * from "./schema-a2a.js";
export * from "./schema-behaviour.js";
