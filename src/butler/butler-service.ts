import { randomBytes } from "node:crypto";
import { and, asc, desc, eq, gte, inArray, isNull, lte, or, sql } from "drizzle-orm";
import { stringify as toYaml } from "yaml";
import type { AgentIdentity } from "../agents/token-service.js";
import type { AuditEventInput, AuditLog } from "../audit/audit-log.js";
import type { Audience, ChannelKind, ReviewInput, ReviewOutcome } from "../channels/channel.js";
import type { Clock } from "../clock.js";
import type { ChangeBus } from "../db/changes.js";
import { type Db, rowsOf, type Tx } from "../db/client.js";
import {
  accessRequests,
  agentTokens,
  auditEvents,
  chatBindings,
  grants,
  linkCodes,
  postedCards,
  requestReviews,
  singleUseGrants,
} from "../db/schema.js";
import { AppError } from "../errors.js";
import { callHash } from "../grants/one-shot.js";
import { newId } from "../ids.js";
import type { Logger } from "../logger.js";
import { enqueue, type OutboxMessage } from "../outbox/outbox.js";
import { composeEffective, policyDiff } from "../policy/effective.js";
import { type CompiledProject, formatDuration, parseDuration, parsePolicyFile } from "../policy/index.js";
import { entryNamesAccount, identityOf, peopleOf, resolveChatAccount } from "../policy/people.js";
import { classifyRisk } from "../policy/risk.js";
import { LIFTABLE_DENIALS, ONE_SHOT_DENIALS, type ScopedCall, scopeRequest } from "../policy/scope.js";
import type { ApproverDef, RiskTier } from "../policy/types.js";
import { grantRowsInEffect, type PolicyStore, sha256, toEntry } from "../policy-store/policy-store.js";
import type { ApprovalCard } from "./approval-card.js";
import type { AgentNotification } from "./notifier.js";
import { callMatches, checkGrantCall, checkOneShotCall, matchesFiled, staleUnder } from "./request-rules.js";

type RequestRow = typeof accessRequests.$inferSelect;
type GrantRow = typeof grants.$inferSelect;
type ReviewRow = typeof requestReviews.$inferSelect;

/** What an agent sends to ask for access. */
export interface AccessRequestInput {
  action?: string | undefined;
  resource?: string | undefined;
  branch?: string | undefined;
  /** Default: the project's default grant TTL. */
  ttl?: string | number | undefined;
  reason: string;
  denial_event_id?: string | undefined;
  /** For a one-shot request (the denial said approval_required): the denied call's parameters, unchanged. */
  params?: Record<string, unknown> | undefined;
}

/** An access request as the API shows it. */
export interface AccessRequestView {
  id: string;
  /** `grant`: a time-bound grant; `one_shot`: exactly one call, once. */
  kind: "grant" | "one_shot";
  status: RequestRow["status"];
  project: string;
  agent: string;
  action: string;
  resource: string;
  branch: string | null;
  reason: string;
  denial_event_id: string | null;
  risk_tier: RiskTier;
  approvals_required: number;
  approvals: { approver: string; channel: string; at: string }[];
  requested_ttl: string;
  requested_ttl_seconds: number;
  created_at: string;
  expires_at: string;
  proposal: { diff: string; base_revision: number; hash: string };
  /** For a one-shot request: the exact call (agent-written parameters) and its hash. */
  call: { params: Record<string, unknown>; operation: string | null; sha256: string } | null;
  decision: { by: string | null; via: string | null; at: string; reason: string | null } | null;
  grant: { id: string; expires_at: string; revoked_at: string | null; used_at: string | null } | null;
}

export type SubmitResult =
  | { status: "created" | "existing"; request: AccessRequestView }
  | {
      status: "already_allowed";
      grant_id: string;
      revision: number;
      reason: string;
      /** The call as scoped (from the denial when one was named). */
      action: string;
      resource: string;
      branch: string | null;
      /** When the allowing grant stops allowing (null: it does not expire). */
      expires_at: string | null;
    };

/** Who decides: an approver id and the surface they used. */
export interface Reviewer {
  approver: string;
  channel: ChannelKind;
}

export interface ButlerDeps {
  db: Db;
  audit: Pick<AuditLog, "appendInTx">;
  policies: Pick<
    PolicyStore,
    "index" | "latestIn" | "recompose" | "refreshProject" | "ensureCurrent" | "lockProject" | "compiledIn"
  >;
  changes: Pick<ChangeBus, "publish">;
  clock: Clock;
  log: Logger;
  /** Approval surfaces that get a card for each new request (Slack, Telegram, ...). */
  channels: readonly ChannelKind[];
  /** Whether agents can be told of outcomes (an AgentNotifier is configured). */
  notifyAgents: boolean;
  publicUrl: () => string;
  /** Called after a transaction that wrote outbox messages commits (wakes the outbox worker). */
  onEnqueued?: () => void;
}

/** What the agent and the cards are told when a request no longer holds at its decision. */
const SUPERSEDED = "the policy changed since this was filed; ask again";
/** The same, when the stored request no longer matches what was filed (it was edited in the database). */
const ALTERED = "this request was altered after it was filed; ask again";

/**
 * The Butler: turns a denied agent's request into a scoped proposal, lets approvers decide, and
 * applies, expires and revokes grants. Every state change commits together with its audit events
 * and with the outbox messages for what must happen afterwards (telling the agent, updating cards).
 */
export function createButler(deps: ButlerDeps) {
  const { db, audit, policies, clock, log } = deps;

  function projectOf(name: string): CompiledProject {
    const p = policies.index().projects.get(name);
    if (!p) throw new AppError("FORBIDDEN", `project '${name}' has no policy in force`);
    return p;
  }

  /**
   * Requests as the API shows them, with their grants: one query per table whatever the number of
   * requests (the dashboard lists hundreds).
   */
  async function views(q: Db | Tx, rows: readonly RequestRow[]): Promise<Viewed[]> {
    if (rows.length === 0) return [];
    const reviews = await q
      .select()
      .from(requestReviews)
      .where(
        and(
          inArray(
            requestReviews.requestId,
            rows.map((r) => r.id),
          ),
          eq(requestReviews.verdict, "approve"),
        ),
      )
      .orderBy(asc(requestReviews.createdAt));
    const approved = rows.filter((r) => r.status === "approved");
    const ids = (kind: RequestRow["kind"]) => approved.filter((r) => r.kind === kind).map((r) => r.id);
    const grantRows: GrantOfRequest[] = [
      ...(ids("grant").length === 0
        ? []
        : (
            await q
              .select()
              .from(grants)
              .where(inArray(grants.id, ids("grant")))
          ).map((g) => ({
            ...g,
            usedAt: null,
          }))),
      ...(ids("one_shot").length === 0
        ? []
        : await q
            .select()
            .from(singleUseGrants)
            .where(inArray(singleUseGrants.id, ids("one_shot")))),
    ];
    const grantOf = new Map(grantRows.map((g) => [g.id, g]));
    const reviewsOf = new Map<string, (typeof reviews)[number][]>();
    for (const v of reviews) reviewsOf.set(v.requestId, [...(reviewsOf.get(v.requestId) ?? []), v]);
    return rows.map((r) => {
      const grant = r.status === "approved" ? grantOf.get(r.id) : undefined;
      return { row: r, grant, view: toView(r, reviewsOf.get(r.id) ?? [], grant) };
    });
  }

  async function view(q: Db | Tx, r: RequestRow): Promise<AccessRequestView> {
    return (await views(q, [r]))[0]!.view;
  }

  /** The card every approval surface renders, from a request and its grant (no queries). */
  function cardOf({ row: r, view: v, grant: g }: Viewed): ApprovalCard {
    const max =
      policies.index().projects.get(r.project)?.document.settings.grantTtlMaxSeconds ?? r.requestedTtlSeconds;
    return {
      requestId: r.id,
      project: r.project,
      agent: r.agent,
      action: r.action,
      resource: r.resource,
      branch: r.branch ?? undefined,
      status: r.status,
      reason: r.reason,
      riskTier: r.riskTier,
      approvalsRequired: r.approvalsRequired,
      approvedBy: v.approvals.map((a) => a.approver),
      requestedTtlSeconds: r.requestedTtlSeconds,
      maxTtlSeconds: max,
      diff: r.proposalDiff,
      decidedBy: r.decidedBy ?? undefined,
      decidedVia: r.decidedVia ?? undefined,
      decisionReason: r.decisionReason ?? undefined,
      grantExpiresAt: v.grant?.expires_at,
      oneShot: r.kind === "one_shot",
      grantState: !g
        ? undefined
        : g.revokedAt
          ? "revoked"
          : g.usedAt
            ? "used"
            : g.expiresAt.getTime() <= clock.now().getTime()
              ? "expired"
              : "live",
      grantRevokedBy: g?.revokedBy ?? undefined,
      grantRevokedAt: g?.revokedAt?.toISOString(),
      url: `${deps.publicUrl()}/v1/access-requests/${r.id}`,
    };
  }

  /** The rows of requests matching `filter`, newest first; for an approver only those of their projects. */
  async function listRows(filter: ListFilter): Promise<RequestRow[]> {
    const conds = [];
    if (filter.status) conds.push(eq(accessRequests.status, filter.status));
    if (filter.pendingOrDecidedSince)
      conds.push(
        or(
          eq(accessRequests.status, "pending"),
          gte(accessRequests.decidedAt, filter.pendingOrDecidedSince),
        )!,
      );
    if (filter.project) conds.push(eq(accessRequests.project, filter.project));
    if (filter.approver !== undefined) {
      const approver = filter.approver;
      const mine = [...policies.index().projects.values()]
        .filter((p) => approverOf(p, approver))
        .map((p) => p.name);
      if (mine.length === 0) return [];
      conds.push(inArray(accessRequests.project, mine));
    }
    return db
      .select()
      .from(accessRequests)
      .where(conds.length ? and(...conds) : undefined)
      .orderBy(desc(accessRequests.createdAt))
      .limit(Math.min(filter.limit ?? 100, 1000));
  }

  /** The denial event, if it is this agent's. */
  async function readDenialEvent(identity: AgentIdentity, eventId: string) {
    const [e] = await db.select().from(auditEvents).where(eq(auditEvents.eventId, eventId));
    // Another agent's event is "not found": its existence is none of this agent's business.
    if (e?.type !== "gateway.denied" || e.agent !== identity.agent || e.project !== identity.project) {
      throw new AppError(
        "NOT_FOUND",
        `denial_event_id: no denial ${eventId} of agent ${identity.agent} in ${identity.project}`,
      );
    }
    return e;
  }

  /** The audited call the denial event describes, if it can be lifted by a grant. */
  function deniedCall(e: typeof auditEvents.$inferSelect): ScopedCall {
    const code = String(e.details.deny_code ?? "");
    if (!LIFTABLE_DENIALS.has(code)) {
      throw new AppError(
        "PRECONDITION_FAILED",
        `denial_event_id: that denial (${e.reason}) cannot be lifted by an access request`,
      );
    }
    return {
      action: e.action ?? "",
      resource: e.resource ?? "",
      branch: (e.details.branch as string | undefined) ?? undefined,
    };
  }

  function notification(
    r: RequestRow,
    type: AgentNotification["type"],
    extra: Partial<AgentNotification> = {},
  ): OutboxMessage {
    const n: AgentNotification = {
      type,
      requestId: r.id,
      agent: r.agent,
      project: r.project,
      action: r.action,
      resource: r.resource,
      branch: r.branch ?? undefined,
      ...extra,
    };
    // Separate queues for the agent and for cards: a failing chat platform must not hold up the agent.
    return { topic: "agent.notify", key: `${r.id}:agent`, payload: n as unknown as Record<string, unknown> };
  }

  /**
   * Outbox messages after a request changed: tell the agent (if `n`), and refresh the card on
   * every platform, each on its own queue (one platform failing never holds up another), with a
   * note saying what happened.
   */
  function afterChange(r: RequestRow, n: OutboxMessage | undefined, note: string): OutboxMessage[] {
    const out: OutboxMessage[] = [];
    if (n && deps.notifyAgents) out.push(n);
    for (const channel of deps.channels) {
      out.push({
        topic: "card.update",
        key: `${r.id}:card:${channel}`,
        payload: { requestId: r.id, channel, note },
      });
    }
    return out;
  }

  async function lockRequest(tx: Tx, id: string): Promise<RequestRow> {
    const [r] = await tx.select().from(accessRequests).where(eq(accessRequests.id, id)).for("update");
    if (!r) throw new AppError("NOT_FOUND", `no access request ${id}`);
    return r;
  }

  /**
   * The project's entry for this person, unless the policies disagree on who the person is (then
   * they decide nothing anywhere until the files agree: see policy/people.ts).
   */
  function approverOf(project: CompiledProject, approver: string): ApproverDef | undefined {
    if (peopleOf(policies.index()).conflicted.has(approver)) return undefined;
    return project.document.approvers.find((a) => a.id === approver);
  }

  /** Whether `project`'s own entry for `person` names this chat account. */
  function namesAccount(
    project: string,
    person: string,
    actor: { channel: string; userId: string; email?: string | undefined },
  ): boolean {
    const entry = policies
      .index()
      .projects.get(project)
      ?.document.approvers.find((a) => a.id === person);
    return entry !== undefined && entryNamesAccount(entry, actor);
  }

  function decidedMessage(r: RequestRow): string {
    const by = r.decidedBy ? ` by ${r.decidedBy}` : "";
    return `already ${r.status}${by}`;
  }

  /** Marks a pending request past its deadline as expired, with its audit event and outbox messages. */
  async function expireInTx(tx: Tx, r: RequestRow, now: Date): Promise<RequestRow> {
    const [updated] = await tx
      .update(accessRequests)
      .set({ status: "expired", decidedAt: now })
      .where(and(eq(accessRequests.id, r.id), eq(accessRequests.status, "pending")))
      .returning();
    if (!updated) return r;
    await audit.appendInTx(tx, [
      {
        type: "access_request.expired",
        agent: r.agent,
        project: r.project,
        action: r.action,
        resource: r.resource,
        reason: `nobody decided before ${r.expiresAt.toISOString()}`,
        details: { request_id: r.id },
      },
    ]);
    await enqueue(
      tx,
      afterChange(
        updated,
        notification(updated, "request_expired"),
        `Expired: nobody decided before ${r.expiresAt.toISOString()}`,
      ),
      now,
    );
    return updated;
  }

  /**
   * The audit line a request's row (or one of its reviews) recorded as its own: by the event id the
   * row keeps; for rows kept before they held one (the migrations fill them in, but an older
   * instance may still be writing), by a scan of the agent's lines (`agent` is indexed).
   */
  async function ownLine(
    tx: Tx,
    eventId: string | null,
    r: RequestRow,
    type: "access_request.filed" | "access_request.approval_recorded",
    approver?: string,
  ) {
    const [line] = eventId
      ? await tx.select().from(auditEvents).where(eq(auditEvents.eventId, eventId))
      : await tx
          .select()
          .from(auditEvents)
          .where(
            and(
              eq(auditEvents.agent, r.agent),
              eq(auditEvents.type, type),
              sql`${auditEvents.details}->>'request_id' = ${r.id}`,
              ...(approver === undefined ? [] : [sql`${auditEvents.details}->>'approver' = ${approver}`]),
            ),
          )
          .limit(1);
    return line?.type === type && line.details.request_id === r.id ? line : undefined;
  }

  /**
   * Why a pending request can no longer be granted as filed, or undefined. Checked under the
   * request's row lock at every approval:
   * - integrity: the row is what was filed (its `access_request.filed` audit line: a rewrite of
   *   the log itself is what `audit verify` and signed checkpoints catch) and its proposal is the
   *   one hashed then, and earlier approvals are those the log recorded; a row edited in the
   *   database is never granted;
   * - the policy in force: every check of filing passes again (a constraint, deny pattern or
   *   never_grant added since, the agent removed, a shorter maximum TTL, a higher risk tier).
   */
  async function whyStale(
    tx: Tx,
    r: RequestRow,
    project: CompiledProject,
    now: Date,
    presser: string,
    reviews: readonly ReviewRow[],
  ): Promise<{ check: "integrity" | "policy"; detail: string } | undefined> {
    const integrity = (detail: string) => ({ check: "integrity" as const, detail });
    const policy = (detail: string) => ({ check: "policy" as const, detail });
    const filed = await ownLine(tx, r.filedEventId, r, "access_request.filed");
    if (!filed) return integrity("the audit log has no record of this request being filed");
    if (!matchesFiled(r, filed))
      return integrity(`the stored request differs from what was filed (audit event ${filed.eventId})`);
    // Approvals given before this press count only as the audit log recorded them.
    for (const a of reviews) {
      if (a.verdict !== "approve" || a.approver === presser) continue;
      const line = await ownLine(tx, a.eventId, r, "access_request.approval_recorded", a.approver);
      if (line?.details.approver !== a.approver)
        return integrity(`the approval by ${a.approver} is not in the audit log as recorded`);
    }
    if (!callMatches(r)) return integrity("the stored call parameters differ from the call that was filed");
    const [token] = await tx
      .select({ revokedAt: agentTokens.revokedAt })
      .from(agentTokens)
      .where(eq(agentTokens.id, r.tokenId));
    if (token?.revokedAt)
      return policy(
        `the agent token that filed it (${r.tokenId}) was revoked at ${token.revokedAt.toISOString()}`,
      );
    const stale = staleUnder(r, project, now);
    return stale === undefined ? undefined : policy(stale);
  }

  /** The identical request still pending, if any (one past its deadline is expired on the way). */
  async function pendingTwin(tx: Tx, dedupeKey: string, now: Date): Promise<RequestRow | undefined> {
    const [existing] = await tx
      .select()
      .from(accessRequests)
      .where(and(eq(accessRequests.dedupeKey, dedupeKey), eq(accessRequests.status, "pending")));
    if (existing && existing.expiresAt > now) return existing;
    if (existing) await expireInTx(tx, existing, now);
    return undefined;
  }

  /**
   * Writes a new pending request with its two audit lines (filed, then the proposal) and the cards
   * to post, in the caller's transaction; an identical request filed at the same moment wins.
   */
  async function insertPending(
    tx: Tx,
    values: typeof accessRequests.$inferInsert,
    filedDetails: Record<string, unknown>,
    proposal: { type: string; reason: string; details: Record<string, unknown> },
  ): Promise<{ status: "created" | "existing"; row: RequestRow }> {
    const [row] = await tx.insert(accessRequests).values(values).onConflictDoNothing().returning();
    if (!row) return { status: "existing", row: await raceWinner(tx, values.dedupeKey) };
    const common = { agent: row.agent, project: row.project, action: row.action, resource: row.resource };
    const [filedLine] = await audit.appendInTx(tx, [
      {
        type: "access_request.filed",
        ...common,
        reason: row.reason,
        details: {
          request_id: row.id,
          branch: row.branch ?? undefined,
          denial_event_id: row.denialEventId ?? undefined,
          ttl: formatDuration(row.requestedTtlSeconds),
          risk_tier: row.riskTier,
          approvals_required: row.approvalsRequired,
          proposal_hash: row.proposalHash,
          // The agent's words as filed (the line's reason may have secrets redacted): approvers
          // read them, so an edit in the database is caught like any other.
          reason_sha256: sha256(row.reason),
          ...filedDetails,
        },
      },
      { ...proposal, ...common, details: { request_id: row.id, ...proposal.details } },
    ]);
    const [withEvent] = await tx
      .update(accessRequests)
      .set({ filedEventId: filedLine!.event_id })
      .where(eq(accessRequests.id, row.id))
      .returning();
    await postCards(tx, row.id, values.createdAt ?? clock.now());
    return { status: "created", row: withEvent! };
  }

  /** The identical request that was filed while this one was: the one to return. */
  async function raceWinner(tx: Tx, dedupeKey: string): Promise<RequestRow> {
    const [other] = await tx
      .select()
      .from(accessRequests)
      .where(and(eq(accessRequests.dedupeKey, dedupeKey), eq(accessRequests.status, "pending")));
    if (!other)
      throw new AppError("UNAVAILABLE", "an identical request was being filed at the same moment; try again");
    return other;
  }

  /** A card for a new request on every approval surface, after commit. */
  async function postCards(tx: Tx, id: string, now: Date): Promise<void> {
    await enqueue(
      tx,
      deps.channels.map((channel) => ({
        topic: "card.post",
        key: `${id}:card:${channel}`,
        payload: { requestId: id, channel },
      })),
      now,
    );
  }

  async function filed(
    outcome: { status: "created" | "existing"; row: RequestRow },
    tier: RiskTier,
  ): Promise<SubmitResult> {
    if (outcome.status === "created") {
      log.info(
        { requestId: outcome.row.id, agent: outcome.row.agent, tier, kind: outcome.row.kind },
        "access request filed",
      );
      deps.onEnqueued?.();
    }
    return { status: outcome.status, request: await view(db, outcome.row) };
  }

  /**
   * A one-shot request: a person approves exactly the call that was denied with
   * approval_required, once. It is bound to the call's hash (action, resource, branch and the
   * canonical parameters), so the approval cannot be used for any other amount or receiver.
   */
  async function submitOneShot(
    identity: AgentIdentity,
    project: CompiledProject,
    event: typeof auditEvents.$inferSelect,
    input: AccessRequestInput,
    ttlSeconds: number,
    opts: { idempotencyKey?: string | undefined },
  ): Promise<SubmitResult> {
    const now = clock.now();
    const call = {
      action: event.action ?? "",
      resource: event.resource ?? "",
      branch: (event.details.branch as string | undefined) ?? undefined,
      params: input.params ?? {},
    };
    for (const k of ["action", "resource", "branch"] as const) {
      if (input[k] !== undefined && input[k] !== call[k])
        throw new AppError(
          "INVALID_INPUT",
          `${k}: a one-shot request is for the denied call exactly (${k} ${call[k] ?? "none"}); leave ${k} out`,
        );
    }
    const hash = callHash(call);
    if (hash !== event.details.call_sha256)
      throw new AppError(
        "INVALID_INPUT",
        "params: these are not the parameters of the denied call; a one-shot approval covers exactly the call that was denied, so send its params unchanged",
      );
    const settings = project.document.settings;
    const checked = checkOneShotCall(project, identity.agent, call, now);
    if (!checked.ok) throw new AppError(checked.code, checked.message);
    const provider = event.details.provider as string | undefined;
    const operation = provider ? `${provider} ${String(event.details.operation ?? "")}`.trim() : null;
    // The call in the path is sent with this key after approval, however often the agent retries.
    const idempotencyKey = opts.idempotencyKey ?? (provider ? `butler-${event.eventId}` : null);
    const proposal = [
      "# One call, once: not a policy change. After approval the agent may make exactly this call",
      // The denial's reason carries agent-written values: one line, so it cannot add YAML lines.
      `# one time, until the approval's TTL runs out. (${(event.reason ?? "require_approval").replace(/[\p{Cc}\u2028\u2029]+/gu, " ")})`,
      toYaml(
        {
          agent: identity.agent,
          action: call.action,
          resource: call.resource,
          ...(call.branch !== undefined ? { branch: call.branch } : {}),
          ...(operation ? { operation } : {}),
          params: call.params,
        },
        { lineWidth: 0 },
      ).trimEnd(),
    ].join("\n");
    const dedupeKey = sha256(JSON.stringify([identity.project, identity.agent, "one_shot", hash]));
    const tier = classifyRisk(call.action, settings);
    const required = settings.approvals[tier];
    const id = newId("req");
    const outcome = await db.transaction(async (tx) => {
      const existing = await pendingTwin(tx, dedupeKey, now);
      if (existing) return { status: "existing" as const, row: existing };
      const proposalHash = sha256(proposal);
      return insertPending(
        tx,
        {
          id,
          kind: "one_shot",
          project: identity.project,
          agent: identity.agent,
          tokenId: identity.tokenId,
          status: "pending",
          action: call.action,
          resource: call.resource,
          branch: call.branch ?? null,
          reason: input.reason,
          denialEventId: event.eventId,
          requestedTtlSeconds: ttlSeconds,
          riskTier: tier,
          approvalsRequired: required,
          proposalDiff: proposal,
          proposalBaseRevision: project.revision,
          proposalHash,
          dedupeKey,
          callHash: hash,
          callParams: call.params,
          callOperation: operation,
          idempotencyKey,
          createdAt: now,
          expiresAt: new Date(now.getTime() + settings.pendingTtlSeconds * 1000),
        },
        { kind: "one_shot", call_sha256: hash },
        {
          type: "one_shot.proposed",
          reason: `proposed: allow exactly this call once for ${identity.agent}${operation ? ` (${operation})` : ""}`,
          details: { call_sha256: hash, proposal_hash: proposalHash },
        },
      );
    });
    return filed(outcome, tier);
  }

  /** Revokes an unused one-shot approval: the call it was for is denied again. */
  async function revokeOneShot(
    grantId: string,
    actor: string,
    reason: string | undefined,
  ): Promise<{ grant_id: string; revision: number }> {
    const now = clock.now();
    const done = await db.transaction(async (tx) => {
      const [g] = await tx
        .select()
        .from(singleUseGrants)
        .where(eq(singleUseGrants.id, grantId))
        .for("update");
      if (!g) throw new AppError("NOT_FOUND", `no grant ${grantId}`);
      if (g.revokedAt)
        throw new AppError(
          "CONFLICT",
          `grant ${grantId} was already revoked at ${g.revokedAt.toISOString()} by ${g.revokedBy}`,
        );
      if (g.usedAt)
        throw new AppError(
          "CONFLICT",
          `one-shot grant ${grantId} was already used at ${g.usedAt.toISOString()}; there is nothing left to revoke`,
        );
      await tx
        .update(singleUseGrants)
        .set({ revokedAt: now, revokedBy: actor })
        .where(eq(singleUseGrants.id, grantId));
      const revision = policies.index().projects.get(g.project)?.revision ?? 0;
      const why = reason ?? `revoked by ${actor}`;
      await audit.appendInTx(tx, [
        {
          type: "grant.revoked",
          agent: g.agent,
          project: g.project,
          action: g.action,
          resource: g.resource,
          reason: why,
          details: { grant_id: g.id, actor, one_shot: true, call_sha256: g.callHash },
        },
      ]);
      const [r] = await tx.select().from(accessRequests).where(eq(accessRequests.id, g.id));
      if (r)
        await enqueue(
          tx,
          afterChange(
            r,
            notification(r, "grant_revoked", { grantId: g.id, reason: why, revision }),
            `The one-shot approval was revoked by ${actor}${reason ? `: ${reason}` : ""}`,
          ),
          now,
        );
      return { grant_id: g.id, revision };
    });
    deps.onEnqueued?.();
    return done;
  }

  // A plain object whose methods refer to each other through `api`, never `this`: any of them can
  // be passed on as a callback.
  const api = {
    /** Files an access request for the calling agent (or returns the identical pending one). */
    async submit(
      identity: AgentIdentity,
      input: AccessRequestInput,
      opts: {
        /** For a one-shot request filed by the gateway in the call path: the key the approved call is sent with. */
        idempotencyKey?: string | undefined;
      } = {},
    ): Promise<SubmitResult> {
      const now = clock.now();
      const project = projectOf(identity.project);
      if (!project.agentRoles.has(identity.agent)) {
        throw new AppError("FORBIDDEN", `agent ${identity.agent} is not in project ${identity.project}`);
      }
      const settings = project.document.settings;
      const ttl = parseDuration(input.ttl ?? settings.grantTtlDefaultSeconds);
      if (!ttl.ok) throw new AppError("INVALID_INPUT", `ttl: ${ttl.error}`);
      if (ttl.value > settings.grantTtlMaxSeconds) {
        throw new AppError(
          "INVALID_INPUT",
          `ttl: ${formatDuration(ttl.value)} is longer than the maximum grant TTL of ${identity.project} (${formatDuration(settings.grantTtlMaxSeconds)}); ask for at most that`,
        );
      }
      const event = input.denial_event_id
        ? await readDenialEvent(identity, input.denial_event_id)
        : undefined;
      if (event && ONE_SHOT_DENIALS.has(String(event.details.deny_code ?? "")))
        return submitOneShot(identity, project, event, input, ttl.value, opts);
      if (input.params !== undefined)
        throw new AppError(
          "INVALID_INPUT",
          "params: only a one-shot request (for a denial that said approval_required) names parameters; a grant covers an action on a resource",
        );
      const denied = event ? deniedCall(event) : undefined;
      const scoped = scopeRequest(
        { action: input.action, resource: input.resource, branch: input.branch },
        denied,
      );
      if (!scoped.ok) throw new AppError("INVALID_INPUT", scoped.error);
      const call = scoped.value;
      const checked = checkGrantCall(project, identity.agent, call, now);
      if (!checked.ok) throw new AppError(checked.code, checked.message);
      const decision = checked.decision;
      if (decision.decision === "ALLOW") {
        await db.transaction((tx) =>
          audit.appendInTx(tx, [
            {
              type: "access_request.already_allowed",
              agent: identity.agent,
              project: identity.project,
              action: call.action,
              resource: call.resource,
              reason: decision.reason,
              details: { grant_id: decision.grantId, denial_event_id: input.denial_event_id },
            },
          ]),
        );
        return {
          status: "already_allowed",
          grant_id: decision.grantId,
          revision: decision.revision,
          reason: decision.reason,
          action: call.action,
          resource: call.resource,
          branch: call.branch ?? null,
          expires_at: decision.expiresAt === undefined ? null : new Date(decision.expiresAt).toISOString(),
        };
      }

      const dedupeKey = sha256(
        JSON.stringify([identity.project, identity.agent, call.action, call.resource, call.branch ?? null]),
      );
      const tier = classifyRisk(call.action, settings);
      const required = settings.approvals[tier];
      const id = newId("req");
      const outcome = await db.transaction(async (tx) => {
        const existing = await pendingTwin(tx, dedupeKey, now);
        if (existing) return { status: "existing" as const, row: existing };

        const latest = await policies.latestIn(tx, identity.project);
        if (!latest || latest.retired)
          throw new AppError("FORBIDDEN", `project '${identity.project}' has no policy in force`);
        const entries = (await grantRowsInEffect(tx, identity.project, now)).map(toEntry);
        const before = composeEffective(latest.baseline, entries);
        const proposed = {
          id,
          agent: identity.agent,
          ...call,
          expiresAt: now.getTime() + ttl.value * 1000,
          note: `access request ${id} by ${identity.agent} (proposed: expires ${formatDuration(ttl.value)} after approval)`,
        };
        const after = composeEffective(latest.baseline, [...entries, proposed]);
        // The grant must load as policy; refuse here, with the reason, rather than fail at approval.
        const check = parsePolicyFile({ file: "proposal", text: after });
        if (!check.ok) {
          throw new AppError(
            "INVALID_INPUT",
            `this call cannot be written as a grant: ${check.error[0]!.path}: ${check.error[0]!.message}`,
          );
        }
        const diff = policyDiff(identity.project, before, after, `revision ${latest.revision}`, `with ${id}`);
        const proposalHash = sha256(diff);
        return insertPending(
          tx,
          {
            id,
            project: identity.project,
            agent: identity.agent,
            tokenId: identity.tokenId,
            status: "pending",
            action: call.action,
            resource: call.resource,
            branch: call.branch ?? null,
            reason: input.reason,
            denialEventId: input.denial_event_id ?? null,
            requestedTtlSeconds: ttl.value,
            riskTier: tier,
            approvalsRequired: required,
            proposalDiff: diff,
            proposalBaseRevision: latest.revision,
            proposalHash,
            dedupeKey,
            createdAt: now,
            expiresAt: new Date(now.getTime() + settings.pendingTtlSeconds * 1000),
          },
          {},
          {
            type: "policy.proposed",
            reason: `proposed grant ${id} for ${identity.agent}: ${call.action} on ${call.resource || "(no resource)"}`,
            details: {
              base_revision: latest.revision,
              proposal_hash: proposalHash,
              before_hash: sha256(before),
              after_hash: sha256(after),
            },
          },
        );
      });
      return filed(outcome, tier);
    },

    /** A request, for the agent that filed it (anyone else's is "not found"). */
    async getForAgent(identity: AgentIdentity, id: string): Promise<AccessRequestView> {
      const [r] = await db.select().from(accessRequests).where(eq(accessRequests.id, id));
      if (!r || r.agent !== identity.agent || r.project !== identity.project)
        throw new AppError("NOT_FOUND", `no access request ${id}`);
      return view(db, r);
    },

    /** A request, for an approver of its project. */
    async getForApprover(approver: string, id: string): Promise<AccessRequestView> {
      const [r] = await db.select().from(accessRequests).where(eq(accessRequests.id, id));
      const p = r && policies.index().projects.get(r.project);
      if (!r || !p || !approverOf(p, approver))
        throw new AppError("NOT_FOUND", `no access request ${id} in your projects`);
      return view(db, r);
    },

    /** Any request (operators through the admin API and CLI). */
    /** A request, read through `q` (a transaction of the caller's, for a consistent view). */
    async get(id: string, q: Db | Tx = db): Promise<AccessRequestView> {
      const [r] = await q.select().from(accessRequests).where(eq(accessRequests.id, id));
      if (!r) throw new AppError("NOT_FOUND", `no access request ${id}`);
      return view(q, r);
    },

    /** Requests, newest first; for an approver only those of their projects. */
    async list(filter: ListFilter): Promise<AccessRequestView[]> {
      return (await views(db, await listRows(filter))).map((x) => x.view);
    },

    /** Requests with the card each approval surface renders, newest first (a bounded number of queries). */
    async listCards(filter: ListFilter): Promise<{ view: AccessRequestView; card: ApprovalCard }[]> {
      return (await views(db, await listRows(filter))).map((x) => ({ view: x.view, card: cardOf(x) }));
    },

    /**
     * An approver's verdict. Presses are serialised on the request's row lock: the first final
     * decision wins, the same person pressing again changes nothing, and a request needing two
     * approvals needs two different people. Only approvers of the request's project may decide.
     */
    async review(
      reviewer: Reviewer,
      id: string,
      verdict: "approve" | "deny",
      opts: { ttl?: string | number | undefined; reason?: string | undefined } = {},
    ): Promise<{
      outcome: "approved" | "denied" | "recorded" | "unchanged";
      request: AccessRequestView;
      /** The card as it is now, for the surface that was pressed. */
      card: ApprovalCard;
    }> {
      const now = clock.now();
      let ttlSeconds: number | undefined;
      if (opts.ttl !== undefined) {
        const t = parseDuration(opts.ttl);
        if (!t.ok) throw new AppError("INVALID_INPUT", `ttl: ${t.error}`);
        ttlSeconds = t.value;
      }
      // A denial decides against the newest policy this instance can load (an approver may just
      // have been removed elsewhere); an approval reads it under the project's lock below.
      if (verdict === "deny") {
        const [pre] = await db
          .select({ project: accessRequests.project })
          .from(accessRequests)
          .where(eq(accessRequests.id, id));
        if (pre) await policies.ensureCurrent(pre.project);
      }
      const result = await db.transaction(async (tx) => {
        const r = await lockRequest(tx, id);
        // An approval of a pending request decides against the revision it will be added to: the
        // project's lock (after the request's row, the order the sweeper takes them in) keeps a
        // policy import from storing a new baseline between this check and the grant's recompose.
        const deciding = verdict === "approve" && r.status === "pending";
        if (deciding) await policies.lockProject(tx, r.project);
        const project = deciding
          ? await policies.compiledIn(tx, r.project)
          : policies.index().projects.get(r.project);
        // Every review of the request, read once under its lock.
        const reviews = await tx.select().from(requestReviews).where(eq(requestReviews.requestId, r.id));
        const mine = reviews.find((v) => v.approver === reviewer.approver);
        const who = project && approverOf(project, reviewer.approver);
        const refusal =
          reviewer.approver === r.agent
            ? {
                audit: `${reviewer.approver} filed this request and cannot decide it`,
                error: "an agent never decides its own request",
              }
            : peopleOf(policies.index()).conflicted.has(reviewer.approver)
              ? {
                  audit: `the policy files disagree on who ${reviewer.approver} is`,
                  error: `the policy files define approver '${reviewer.approver}' differently; nobody decides as '${reviewer.approver}' until they agree (run butler policy validate)`,
                }
              : !who
                ? {
                    audit: `${reviewer.approver} is not an approver for ${r.project}`,
                    error: `you are not an approver for ${r.project}`,
                  }
                : !who.tiers.includes(r.riskTier)
                  ? {
                      audit: `${reviewer.approver} may not decide ${r.riskTier}-risk requests`,
                      error: `you may not decide ${r.riskTier}-risk requests of ${r.project}`,
                    }
                  : undefined;
        if (refusal) {
          await audit.appendInTx(tx, [
            {
              type: "access_request.review_refused",
              agent: r.agent,
              project: r.project,
              action: r.action,
              resource: r.resource,
              reason: refusal.audit,
              details: { request_id: r.id, approver: reviewer.approver, channel: reviewer.channel, verdict },
            },
          ]);
          return { error: new AppError("FORBIDDEN", refusal.error) };
        }
        if (r.status === "pending" && r.expiresAt <= now) {
          await expireInTx(tx, r, now);
          return {
            error: new AppError(
              "EXPIRED",
              `request ${r.id} expired at ${r.expiresAt.toISOString()} before anyone decided`,
            ),
          };
        }
        if (r.status !== "pending") {
          if (mine && mine.verdict === verdict) return { outcome: "unchanged" as const, row: r };
          return { error: new AppError("ALREADY_DECIDED", `request ${r.id} is ${decidedMessage(r)}`) };
        }
        if (ttlSeconds !== undefined && ttlSeconds > r.requestedTtlSeconds) {
          return {
            error: new AppError(
              "INVALID_INPUT",
              `ttl: an approver may shorten the requested ${formatDuration(r.requestedTtlSeconds)}, not lengthen it`,
            ),
          };
        }
        const stale =
          verdict === "approve"
            ? await whyStale(tx, r, project!, now, reviewer.approver, reviews)
            : undefined;
        if (stale) {
          const lead = stale.check === "policy" ? SUPERSEDED : ALTERED;
          // The agent hears which policy check failed, but not which tamper check fired (that is
          // for the log, the audit line and the approver).
          const toAgent = stale.check === "policy" ? `${lead} (${stale.detail})` : lead;
          if (stale.check === "integrity")
            log.error(
              { requestId: r.id, detail: stale.detail },
              "access request does not match its audit record; not granted",
            );
          const [superseded] = await tx
            .update(accessRequests)
            .set({
              status: "superseded",
              decidedAt: now,
              decidedVia: reviewer.channel,
              decisionReason: stale.check === "policy" ? stale.detail : ALTERED,
            })
            .where(and(eq(accessRequests.id, r.id), eq(accessRequests.status, "pending")))
            .returning();
          await audit.appendInTx(tx, [
            {
              type: "access_request.superseded",
              agent: r.agent,
              project: r.project,
              action: r.action,
              resource: r.resource,
              reason: `${lead}: ${stale.detail}`,
              details: {
                request_id: r.id,
                check: stale.check,
                approver: reviewer.approver,
                channel: reviewer.channel,
              },
            },
          ]);
          await enqueue(
            tx,
            afterChange(
              superseded!,
              notification(superseded!, "request_superseded", { reason: toAgent }),
              `Superseded, nothing granted: ${lead} (${stale.detail})`,
            ),
            now,
          );
          return {
            error: new AppError(
              "SUPERSEDED",
              `nothing was granted: ${lead} (${stale.detail}); the request is superseded and the agent was told`,
            ),
          };
        }
        const earlier = mine;
        if (earlier && earlier.verdict !== verdict) {
          return {
            error: new AppError(
              "ALREADY_DECIDED",
              `you already ${earlier.verdict === "approve" ? "approved" : "denied"} request ${r.id}`,
            ),
          };
        }
        const inserted = await tx
          .insert(requestReviews)
          .values({
            requestId: r.id,
            approver: reviewer.approver,
            verdict,
            channel: reviewer.channel,
            ttlSeconds: ttlSeconds ?? null,
            createdAt: now,
          })
          .onConflictDoNothing()
          .returning();
        if (inserted.length === 0) return { outcome: "unchanged" as const, row: r };
        const common = { agent: r.agent, project: r.project, action: r.action, resource: r.resource };

        if (verdict === "deny") {
          const [denied] = await tx
            .update(accessRequests)
            .set({
              status: "denied",
              decidedAt: now,
              decidedBy: reviewer.approver,
              decidedVia: reviewer.channel,
              decisionReason: opts.reason ?? null,
            })
            .where(and(eq(accessRequests.id, r.id), eq(accessRequests.status, "pending")))
            .returning();
          await audit.appendInTx(tx, [
            {
              type: "access_request.denied",
              ...common,
              reason: opts.reason ?? `denied by ${reviewer.approver}`,
              details: { request_id: r.id, approver: reviewer.approver, channel: reviewer.channel },
            },
          ]);
          await enqueue(
            tx,
            afterChange(
              denied!,
              notification(denied!, "request_denied", { reason: opts.reason }),
              `Denied by ${reviewer.approver} via ${reviewer.channel}${opts.reason ? `: ${opts.reason}` : ""}`,
            ),
            now,
          );
          return { outcome: "denied" as const, row: denied! };
        }

        // Approvals count while their approver still decides this tier of this project under
        // the policy in force (someone removed since, or limited to lower tiers, no longer counts).
        const approvals = [...reviews.filter((v) => v.approver !== reviewer.approver), ...inserted]
          .filter((v) => v.verdict === "approve")
          .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime())
          .filter(
            (a) =>
              a.approver === reviewer.approver ||
              (a.approver !== r.agent &&
                (approverOf(project!, a.approver)?.tiers.includes(r.riskTier) ?? false)),
          );
        if (approvals.length < r.approvalsRequired) {
          const [recordedLine] = await audit.appendInTx(tx, [
            {
              type: "access_request.approval_recorded",
              ...common,
              reason: `${approvals.length} of ${r.approvalsRequired} approvals`,
              details: {
                request_id: r.id,
                approver: reviewer.approver,
                channel: reviewer.channel,
                approvals: approvals.length,
                approvals_required: r.approvalsRequired,
              },
            },
          ]);
          await tx
            .update(requestReviews)
            .set({ eventId: recordedLine!.event_id })
            .where(and(eq(requestReviews.requestId, r.id), eq(requestReviews.approver, reviewer.approver)));
          await enqueue(
            tx,
            afterChange(
              r,
              notification(r, "approval_recorded"),
              `${reviewer.approver} approved via ${reviewer.channel} (${approvals.length} of ${r.approvalsRequired} approvals)`,
            ),
            now,
          );
          return { outcome: "recorded" as const, row: r };
        }

        // Final approval: the shortest TTL any approver chose, from now.
        const ttl = Math.min(
          r.requestedTtlSeconds,
          ...approvals.map((a) => a.ttlSeconds ?? r.requestedTtlSeconds),
        );
        const expiresAt = new Date(now.getTime() + ttl * 1000);
        const approvedBy = approvals.map((a) => a.approver);
        const [approved] = await tx
          .update(accessRequests)
          .set({
            status: "approved",
            decidedAt: now,
            decidedBy: approvedBy.join(", "),
            decidedVia: reviewer.channel,
            grantedTtlSeconds: ttl,
          })
          .where(and(eq(accessRequests.id, r.id), eq(accessRequests.status, "pending")))
          .returning();
        const approvedLine: AuditEventInput = {
          type: "access_request.approved",
          ...common,
          reason: `approved by ${approvedBy.join(", ")} for ${formatDuration(ttl)}`,
          details: {
            request_id: r.id,
            approver: reviewer.approver,
            approved_by: approvedBy,
            channel: reviewer.channel,
            ttl: formatDuration(ttl),
          },
        };
        let revision: number;
        if (r.kind === "one_shot") {
          // Exactly the approved call, once: a single-use grant, not a policy change.
          await tx.insert(singleUseGrants).values({
            id: r.id,
            project: r.project,
            agent: r.agent,
            action: r.action,
            resource: r.resource,
            callHash: r.callHash ?? "",
            idempotencyKey: r.idempotencyKey,
            approvedBy,
            createdAt: now,
            expiresAt,
          });
          revision = project!.revision;
          await audit.appendInTx(tx, [
            approvedLine,
            {
              type: "grant.one_shot",
              ...common,
              reason: `single-use grant for exactly the approved call, usable once until ${expiresAt.toISOString()}`,
              details: {
                grant_id: r.id,
                call_sha256: r.callHash,
                approved_by: approvedBy.join(", "),
                expires: expiresAt.toISOString(),
              },
            },
          ]);
        } else {
          await tx.insert(grants).values({
            id: r.id,
            project: r.project,
            agent: r.agent,
            action: r.action,
            resource: r.resource,
            branch: r.branch,
            approvedBy,
            createdAt: now,
            expiresAt,
          });
          const applied = await policies.recompose(tx, r.project, `grant:${r.id}`);
          revision = applied.revision;
          await audit.appendInTx(tx, [
            approvedLine,
            {
              type: "grant.applied",
              ...common,
              reason: `policy reloaded for ${r.project} (1 grant added)`,
              details: {
                grant_id: r.id,
                branch: r.branch ?? undefined,
                revision: applied.revision,
                before_hash: applied.beforeHash,
                after_hash: applied.afterHash,
                approved_by: approvedBy.join(", "),
                expires: expiresAt.toISOString(),
              },
            },
          ]);
        }
        await enqueue(
          tx,
          afterChange(
            approved!,
            notification(approved!, "grant_ready", {
              grantId: r.id,
              expiresAt: expiresAt.toISOString(),
              revision,
            }),
            `Approved by ${approvedBy.join(", ")} via ${reviewer.channel}; the grant expires ${expiresAt.toISOString()}`,
          ),
          now,
        );
        return { outcome: "approved" as const, row: approved! };
      });
      deps.onEnqueued?.();
      if ("error" in result) throw result.error;
      // This instance serves the new revision before answering; others follow on the notification.
      if (result.outcome === "approved" && result.row.kind !== "one_shot")
        await policies.refreshProject(result.row.project);
      log.info(
        { requestId: id, approver: reviewer.approver, outcome: result.outcome },
        "access request reviewed",
      );
      const [viewed] = await views(db, [result.row]);
      return { outcome: result.outcome, request: viewed!.view, card: cardOf(viewed!) };
    },

    /**
     * The agent withdraws its own pending request. `unlessStillWanted` is asked under the request's row
     * lock, in the same transaction: when it answers true (another A2A task still waits on the
     * request, say), the request stays pending; two callers deciding at once are serialised.
     */
    async cancel(
      identity: AgentIdentity,
      id: string,
      opts: { unlessStillWanted?: (tx: Tx) => Promise<boolean> } = {},
    ): Promise<AccessRequestView> {
      const now = clock.now();
      const row = await db.transaction(async (tx) => {
        const r = await lockRequest(tx, id);
        if (r.agent !== identity.agent || r.project !== identity.project)
          throw new AppError("NOT_FOUND", `no access request ${id}`);
        if (r.status === "canceled") return r;
        if (r.status !== "pending")
          throw new AppError("ALREADY_DECIDED", `request ${r.id} is ${decidedMessage(r)}`);
        if (await opts.unlessStillWanted?.(tx)) return r;
        const [c] = await tx
          .update(accessRequests)
          .set({ status: "canceled", decidedAt: now, decidedBy: identity.agent, decidedVia: "agent" })
          .where(eq(accessRequests.id, r.id))
          .returning();
        await audit.appendInTx(tx, [
          {
            type: "access_request.canceled",
            agent: r.agent,
            project: r.project,
            action: r.action,
            resource: r.resource,
            details: { request_id: r.id },
          },
        ]);
        await enqueue(
          tx,
          afterChange(c!, notification(c!, "request_canceled"), "Canceled by the agent"),
          now,
        );
        return c!;
      });
      deps.onEnqueued?.();
      return view(db, row);
    },

    /** Revokes a grant at once: a new policy revision without it, audited, the agent told. */
    async revokeGrant(
      grantId: string,
      actor: string,
      reason?: string,
    ): Promise<{ grant_id: string; revision: number }> {
      const now = clock.now();
      const [single] = await db
        .select({ id: singleUseGrants.id })
        .from(singleUseGrants)
        .where(eq(singleUseGrants.id, grantId));
      if (single) return revokeOneShot(grantId, actor, reason);
      const done = await db.transaction(async (tx) => {
        const [pre] = await tx.select({ project: grants.project }).from(grants).where(eq(grants.id, grantId));
        if (!pre) throw new AppError("NOT_FOUND", `no grant ${grantId}`);
        // The project's lock before the grant's row, in the same order as policy imports.
        await policies.lockProject(tx, pre.project);
        const [g] = await tx.select().from(grants).where(eq(grants.id, grantId)).for("update");
        if (!g) throw new AppError("NOT_FOUND", `no grant ${grantId}`);
        if (g.revokedAt)
          throw new AppError(
            "CONFLICT",
            `grant ${grantId} was already revoked at ${g.revokedAt.toISOString()} by ${g.revokedBy}`,
          );
        await tx.update(grants).set({ revokedAt: now, revokedBy: actor }).where(eq(grants.id, grantId));
        const applied = await policies.recompose(tx, g.project, `revoke:${grantId}`);
        await audit.appendInTx(tx, [
          {
            type: "grant.revoked",
            agent: g.agent,
            project: g.project,
            action: g.action,
            resource: g.resource,
            reason: reason ?? `revoked by ${actor}`,
            details: {
              grant_id: g.id,
              actor,
              revision: applied.revision,
              before_hash: applied.beforeHash,
              after_hash: applied.afterHash,
            },
          },
        ]);
        const [r] = await tx.select().from(accessRequests).where(eq(accessRequests.id, g.id));
        if (r)
          await enqueue(
            tx,
            afterChange(
              r,
              notification(r, "grant_revoked", {
                grantId: g.id,
                reason: reason ?? `revoked by ${actor}`,
                revision: applied.revision,
              }),
              `The grant was revoked by ${actor}${reason ? `: ${reason}` : ""}`,
            ),
            now,
          );
        return { grant_id: g.id, revision: applied.revision, project: g.project };
      });
      deps.onEnqueued?.();
      await policies.refreshProject(done.project);
      return { grant_id: done.grant_id, revision: done.revision };
    },

    /** Grants, newest first; active only unless `all`. */
    async listGrants(filter: {
      project?: string | undefined;
      all?: boolean;
      projects?: string[];
    }): Promise<GrantView[]> {
      const now = clock.now();
      const conds = [];
      if (filter.project) conds.push(eq(grants.project, filter.project));
      if (filter.projects) {
        if (filter.projects.length === 0) return [];
        conds.push(inArray(grants.project, filter.projects));
      }
      if (!filter.all) conds.push(isNull(grants.revokedAt), sql`${grants.expiresAt} > ${now.toISOString()}`);
      const rows = await db
        .select()
        .from(grants)
        .where(conds.length ? and(...conds) : undefined)
        .orderBy(desc(grants.createdAt))
        .limit(1000);
      return rows.map((g) => grantView(g, now));
    },

    /** The project a grant belongs to (to check who may revoke it). */
    async grantProject(grantId: string): Promise<string> {
      const [g] = await db.select({ project: grants.project }).from(grants).where(eq(grants.id, grantId));
      const [one] = g
        ? []
        : await db
            .select({ project: singleUseGrants.project })
            .from(singleUseGrants)
            .where(eq(singleUseGrants.id, grantId));
      const found = g ?? one;
      if (!found) throw new AppError("NOT_FOUND", `no grant ${grantId}`);
      return found.project;
    },

    /**
     * Housekeeping, safe to run on every instance (one at a time wins an advisory lock): expires
     * pending requests past their deadline and records expired grants (a new revision, the agent
     * told). Grants stop allowing at their expiry on their own; this only records it.
     */
    async sweep(): Promise<{ expiredRequests: number; expiredGrants: number; reminded: number }> {
      const now = clock.now();
      const swept = await db.transaction(async (tx) => {
        const [lock] = rowsOf<{ ok: boolean }>(
          await tx.execute(sql`SELECT pg_try_advisory_xact_lock(hashtext('butler.sweep')) AS ok`),
        );
        if (!lock?.ok) return { expiredRequests: 0, expiredGrants: 0, reminded: 0, projects: [] as string[] };
        const due = await tx
          .select()
          .from(accessRequests)
          .where(and(eq(accessRequests.status, "pending"), lte(accessRequests.expiresAt, now)))
          .limit(500)
          .for("update", { skipLocked: true });
        let reminded = 0;
        for (const r of due) await expireInTx(tx, r, now);
        if (deps.channels.length > 0) {
          const waiting = await tx
            .select()
            .from(accessRequests)
            .where(and(eq(accessRequests.status, "pending"), isNull(accessRequests.remindedAt)))
            .limit(500)
            .for("update", { skipLocked: true });
          for (const r of waiting) {
            const after = policies.index().projects.get(r.project)?.document.settings.reminderAfterSeconds;
            if (after === undefined || r.createdAt.getTime() + after * 1000 > now.getTime()) continue;
            await tx.update(accessRequests).set({ remindedAt: now }).where(eq(accessRequests.id, r.id));
            await enqueue(
              tx,
              afterChange(
                r,
                undefined,
                `Reminder: still waiting for a decision; the request expires ${r.expiresAt.toISOString()}`,
              ),
              now,
            );
            reminded++;
          }
        }
        const candidates = await tx
          .select({ project: grants.project })
          .from(grants)
          .where(and(isNull(grants.revokedAt), isNull(grants.expiryRecordedAt), lte(grants.expiresAt, now)))
          .limit(500);
        let expiredCount = 0;
        const touched: string[] = [];
        for (const project of new Set(candidates.map((c) => c.project))) {
          try {
            // A savepoint per project: one project whose policy cannot be recomposed must not stop
            // the others' expiries from being recorded.
            expiredCount += await tx.transaction(async (sp) => {
              await policies.lockProject(sp, project);
              const list = await sp
                .select()
                .from(grants)
                .where(
                  and(
                    eq(grants.project, project),
                    isNull(grants.revokedAt),
                    isNull(grants.expiryRecordedAt),
                    lte(grants.expiresAt, now),
                  ),
                )
                .for("update", { skipLocked: true });
              if (list.length === 0) return 0;
              const ids = list.map((g) => g.id);
              await sp.update(grants).set({ expiryRecordedAt: now }).where(inArray(grants.id, ids));
              // A retired project has no policy to recompose; its grants stopped allowing anyway.
              const latest = await policies.latestIn(sp, project);
              const revision =
                latest && !latest.retired
                  ? (await policies.recompose(sp, project, `expiry:${ids.join(",")}`)).revision
                  : undefined;
              const events: AuditEventInput[] = list.map((g) => ({
                type: "grant.expired",
                agent: g.agent,
                project: g.project,
                action: g.action,
                resource: g.resource,
                reason: `grant ${g.id} expired at ${g.expiresAt.toISOString()}`,
                details: { grant_id: g.id, revision },
              }));
              await audit.appendInTx(sp, events);
              const requests = await sp.select().from(accessRequests).where(inArray(accessRequests.id, ids));
              for (const r of requests) {
                const g = list.find((x) => x.id === r.id)!;
                await enqueue(
                  sp,
                  afterChange(
                    r,
                    notification(r, "grant_expired", {
                      grantId: g.id,
                      expiresAt: g.expiresAt.toISOString(),
                      revision,
                    }),
                    `The grant expired at ${g.expiresAt.toISOString()}`,
                  ),
                  now,
                );
              }
              return list.length;
            });
            touched.push(project);
          } catch (e) {
            log.error({ err: e, project }, "recording grant expiries failed for this project");
          }
        }
        return { expiredRequests: due.length, expiredGrants: expiredCount, reminded, projects: touched };
      });
      if (swept.expiredRequests + swept.expiredGrants + swept.reminded > 0) deps.onEnqueued?.();
      for (const project of swept.projects) await policies.refreshProject(project);
      return {
        expiredRequests: swept.expiredRequests,
        expiredGrants: swept.expiredGrants,
        reminded: swept.reminded,
      };
    },

    /** The card every approval surface renders, from the current state. */
    async card(id: string): Promise<ApprovalCard> {
      const [r] = await db.select().from(accessRequests).where(eq(accessRequests.id, id));
      if (!r) throw new AppError("NOT_FOUND", `no access request ${id}`);
      return cardOf((await views(db, [r]))[0]!);
    },

    /**
     * Whether `approver` may decide this request now (what the dashboard shows buttons for; the
     * review checks it again under the request's lock).
     */
    mayDecide(approver: string, c: Pick<ApprovalCard, "project" | "riskTier" | "agent">): boolean {
      const project = policies.index().projects.get(c.project);
      const who = project && approverOf(project, approver);
      return approver !== c.agent && (who?.tiers.includes(c.riskTier) ?? false);
    },

    /** The projects where `approver` is an approver. */
    projectsOfApprover(approver: string): string[] {
      return [...policies.index().projects.values()]
        .filter((p) => approverOf(p, approver))
        .map((p) => p.name);
    },

    /** Who gets a project's cards on one platform (see Audience in channels/channel.ts). */
    async audienceFor(project: string, channel: ChannelKind): Promise<Audience> {
      const doc = policies.index().projects.get(project)?.document;
      if (!doc) return { routes: undefined, approvers: [] };
      const routes =
        channel === "slack"
          ? doc.settings.channels.slack
          : channel === "telegram"
            ? doc.settings.channels.telegram
            : undefined;
      const bindings = await db.select().from(chatBindings).where(eq(chatBindings.channel, channel));
      const people = peopleOf(policies.index());
      // Cards go to the accounts this project's own entry names and to accounts the person linked
      // themselves; never to an account another person also claims.
      const mine = (id: string, key: string) =>
        [...(people.accounts.get(key) ?? [id])].every((x) => x === id);
      return {
        routes,
        approvers: doc.approvers
          .filter((a) => !people.conflicted.has(a.id))
          .map((a) => {
            const identity = identityOf(a);
            const own =
              channel === "slack"
                ? identity.slackUserId
                : channel === "telegram"
                  ? identity.telegramUserId
                  : a.id;
            const bound = bindings.filter((b) => b.approver === a.id).map((b) => b.userId);
            return {
              id: a.id,
              userIds: [...new Set([...(own ? [own] : []), ...bound])].filter((u) =>
                mine(a.id, `${channel}:${u}`),
              ),
              emails:
                channel === "slack" && identity.slackEmail && mine(a.id, `slack-email:${identity.slackEmail}`)
                  ? [identity.slackEmail]
                  : [],
            };
          }),
      };
    },

    /**
     * A one-time code that binds the chat account presenting it to `approver` (for Telegram, where
     * nobody knows their numeric id). Single use, valid for 15 minutes, audited both ways.
     */
    async createLinkCode(
      approver: string,
      channel: ChannelKind,
      actor: string,
    ): Promise<{ code: string; expiresAt: string }> {
      const code = randomBytes(18).toString("base64url");
      const now = clock.now();
      const expiresAt = new Date(now.getTime() + 15 * 60_000);
      await db.transaction(async (tx) => {
        await tx
          .insert(linkCodes)
          .values({ codeHash: sha256(code), approver, channel, createdAt: now, expiresAt });
        await audit.appendInTx(tx, [
          {
            type: "approver.link_created",
            details: { approver, channel, actor, expires: expiresAt.toISOString() },
          },
        ]);
      });
      return { code, expiresAt: expiresAt.toISOString() };
    },

    /** Redeems a link code for the chat account `userId`; returns the approver it is now bound to. */
    async redeemLinkCode(code: string, channel: ChannelKind, userId: string): Promise<string> {
      const now = clock.now();
      const outcome = await db.transaction(async (tx) => {
        const [row] = await tx
          .select()
          .from(linkCodes)
          .where(eq(linkCodes.codeHash, sha256(code)))
          .for("update");
        const claimedBy = [...(peopleOf(policies.index()).accounts.get(`${channel}:${userId}`) ?? [])];
        const problem =
          !row || row.channel !== channel
            ? "unknown"
            : row.usedAt
              ? "already used"
              : row.expiresAt <= now
                ? "expired"
                : claimedBy.some((id) => id !== row.approver)
                  ? "claimed"
                  : undefined;
        if (problem || !row) return { problem: problem ?? "unknown" };
        await tx
          .update(linkCodes)
          .set({ usedAt: now, usedBy: userId })
          .where(eq(linkCodes.codeHash, row.codeHash));
        await tx
          .insert(chatBindings)
          .values({ channel, userId, approver: row.approver, createdAt: now })
          .onConflictDoUpdate({
            target: [chatBindings.channel, chatBindings.userId],
            set: { approver: row.approver, createdAt: now },
          });
        await audit.appendInTx(tx, [
          { type: "approver.linked", details: { approver: row.approver, channel, user_id: userId } },
        ]);
        return { approver: row.approver };
      });
      if ("problem" in outcome) {
        // Recorded in its own transaction: the refusal is the event, nothing else changed.
        await db.transaction((tx) =>
          audit.appendInTx(tx, [
            {
              type: "approver.link_refused",
              reason: `link code ${outcome.problem}`,
              details: { channel, user_id: userId },
            },
          ]),
        );
        throw new AppError(
          "FORBIDDEN",
          outcome.problem === "expired"
            ? "This link has expired; ask for a new one."
            : outcome.problem === "claimed"
              ? "This account belongs to another approver in the policy files, so it cannot be linked to a second one."
              : "This link is not valid (unknown or already used).",
        );
      }
      return outcome.approver;
    },

    async postedCardsOf(id: string) {
      return db.select().from(postedCards).where(eq(postedCards.requestId, id));
    },

    async recordPostedCards(
      id: string,
      cards: { channel: string; chatId: string; messageId: string }[],
    ): Promise<void> {
      if (cards.length === 0) return;
      await db
        .insert(postedCards)
        .values(cards.map((c) => ({ requestId: id, ...c, createdAt: clock.now() })))
        .onConflictDoNothing();
    },

    /**
     * A button pressed on a card. The channel's user id is resolved to an approver of the request's
     * project through the policy's approver section (Slack and Telegram user ids; on the dashboard
     * the signed-in approver's id); an unknown person is refused (and audited), never guessed.
     */
    async reviewFromChannel(input: ReviewInput): Promise<ReviewOutcome> {
      try {
        const [r] = await db
          .select({ project: accessRequests.project })
          .from(accessRequests)
          .where(eq(accessRequests.id, input.requestId));
        if (!r) return { ok: false, code: "NOT_FOUND", message: `no access request ${input.requestId}` };
        const [bound] =
          input.actor.channel === "slack" || input.actor.channel === "telegram"
            ? await db
                .select({ approver: chatBindings.approver })
                .from(chatBindings)
                .where(
                  and(
                    eq(chatBindings.channel, input.actor.channel),
                    eq(chatBindings.userId, input.actor.userId),
                  ),
                )
            : [];
        // A chat account is exactly one person (across every project) or nobody; on the dashboard
        // the signed-in person's id is the account.
        const chat = input.actor.channel === "slack" || input.actor.channel === "telegram";
        const found = chat
          ? resolveChatAccount(
              peopleOf(policies.index()),
              {
                channel: input.actor.channel as "slack" | "telegram",
                userId: input.actor.userId,
                email: input.actor.email,
              },
              bound?.approver,
            )
          : ({ kind: "person", id: input.actor.userId } as const);
        // An account speaks for a person in a project only if that project's own entry for the
        // person names it (or an operator's link bound it): no project's file can give accounts to
        // another project's approver.
        const resolved =
          found.kind === "person" &&
          chat &&
          bound?.approver !== found.id &&
          !namesAccount(r.project, found.id, input.actor)
            ? ({ kind: "elsewhere", id: found.id } as const)
            : found;
        if (resolved.kind !== "person") {
          const account = `${input.actor.channel}:${input.actor.userId}`;
          const reason =
            resolved.kind === "nobody"
              ? `${account} is not any approver's account`
              : resolved.kind === "elsewhere"
                ? `${account} is ${resolved.id}'s only in another project's policy; ${r.project}'s does not name it`
                : `${account} is claimed by more than one approver (${resolved.ids.join(", ")}) or by one the policy files disagree on`;
          await db.transaction((tx) =>
            audit.appendInTx(tx, [
              {
                type: "access_request.review_refused",
                project: r.project,
                reason,
                details: {
                  request_id: input.requestId,
                  // Who tried: the person when the account is someone's elsewhere, else the account.
                  approver: resolved.kind === "elsewhere" ? resolved.id : account,
                  channel: input.actor.channel,
                  verdict: input.verdict,
                  ...(resolved.kind === "ambiguous" ? { candidates: resolved.ids } : {}),
                  ...(resolved.kind === "elsewhere" ? { account } : {}),
                },
              },
            ]),
          );
          return {
            ok: false,
            code: "FORBIDDEN",
            message:
              resolved.kind === "nobody" || resolved.kind === "elsewhere"
                ? `you are not an approver for ${r.project}`
                : `Your ${input.actor.channel} account belongs to more than one approver in the policy files, so it decides nothing until an operator fixes them.`,
          };
        }
        const approver = resolved.id;
        const done = await api.review(
          { approver, channel: input.actor.channel },
          input.requestId,
          input.verdict,
          {
            ttl: input.ttlSeconds,
            reason: input.reason,
          },
        );
        const message =
          done.outcome === "recorded"
            ? `Recorded: ${done.request.approvals.length} of ${done.request.approvals_required} approvals`
            : done.outcome === "unchanged" && done.request.status === "pending"
              ? `You already approved this request: ${done.request.approvals.length} of ${done.request.approvals_required} approvals, waiting for ${done.request.approvals_required - done.request.approvals.length} more from another approver`
              : done.outcome === "unchanged"
                ? `Nothing changed: the request is already ${done.request.status}${done.request.decision?.by ? ` by ${done.request.decision.by}` : ""}`
                : `Request ${done.outcome}`;
        return { ok: true, card: done.card, message };
      } catch (e) {
        if (e instanceof AppError) return { ok: false, code: e.code, message: e.message };
        throw e;
      }
    },
  };
  return api;
}

/** Which requests a list shows. */
export interface ListFilter {
  status?: RequestRow["status"];
  project?: string;
  /** Only requests of the projects this approver decides. */
  approver?: string;
  /** Only pending requests and those decided since this moment (the dashboard's requests page). */
  pendingOrDecidedSince?: Date;
  limit?: number;
}

/** A request's grant (a policy grant or a single-use one), as its view and card need it. */
type GrantOfRequest = Pick<GrantRow, "id" | "expiresAt" | "revokedAt" | "revokedBy"> & {
  usedAt: Date | null;
};

/** A request with its view and its grant. */
interface Viewed {
  row: RequestRow;
  view: AccessRequestView;
  grant: GrantOfRequest | undefined;
}

/** A request as the API shows it, from its row, its approvals and its grant (pure). */
function toView(
  r: RequestRow,
  reviews: readonly (typeof requestReviews.$inferSelect)[],
  grant: GrantOfRequest | undefined,
): AccessRequestView {
  return {
    id: r.id,
    kind: r.kind,
    status: r.status,
    project: r.project,
    agent: r.agent,
    action: r.action,
    resource: r.resource,
    branch: r.branch,
    reason: r.reason,
    denial_event_id: r.denialEventId,
    risk_tier: r.riskTier,
    approvals_required: r.approvalsRequired,
    approvals: reviews.map((v) => ({
      approver: v.approver,
      channel: v.channel,
      at: v.createdAt.toISOString(),
    })),
    requested_ttl: formatDuration(r.requestedTtlSeconds),
    requested_ttl_seconds: r.requestedTtlSeconds,
    created_at: r.createdAt.toISOString(),
    expires_at: r.expiresAt.toISOString(),
    proposal: { diff: r.proposalDiff, base_revision: r.proposalBaseRevision, hash: r.proposalHash },
    call:
      r.kind === "one_shot"
        ? { params: r.callParams ?? {}, operation: r.callOperation, sha256: r.callHash ?? "" }
        : null,
    decision: r.decidedAt
      ? { by: r.decidedBy, via: r.decidedVia, at: r.decidedAt.toISOString(), reason: r.decisionReason }
      : null,
    grant: grant
      ? {
          id: grant.id,
          expires_at: grant.expiresAt.toISOString(),
          revoked_at: grant.revokedAt?.toISOString() ?? null,
          used_at: grant.usedAt?.toISOString() ?? null,
        }
      : null,
  };
}

/** A grant as the API shows it. */
export interface GrantView {
  id: string;
  project: string;
  agent: string;
  action: string;
  resource: string;
  branch: string | null;
  approved_by: string[];
  created_at: string;
  expires_at: string;
  revoked_at: string | null;
  revoked_by: string | null;
  state: "active" | "expired" | "revoked";
  seconds_left: number;
}

function grantView(g: GrantRow, now: Date): GrantView {
  const state = g.revokedAt ? "revoked" : g.expiresAt <= now ? "expired" : "active";
  return {
    id: g.id,
    project: g.project,
    agent: g.agent,
    action: g.action,
    resource: g.resource,
    branch: g.branch,
    approved_by: g.approvedBy,
    created_at: g.createdAt.toISOString(),
    expires_at: g.expiresAt.toISOString(),
    revoked_at: g.revokedAt?.toISOString() ?? null,
    revoked_by: g.revokedBy,
    state,
    seconds_left: state === "active" ? Math.floor((g.expiresAt.getTime() - now.getTime()) / 1000) : 0,
  };
}

export type Butler = ReturnType<typeof createButler>;
