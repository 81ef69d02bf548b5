import { and, eq } from "drizzle-orm";
import type { AuditEventInput } from "../audit/audit-log.js";
import type { AuditLine } from "../audit/chain.js";
import type { Tx } from "../db/client.js";
import { grants, requestReviews, singleUseGrants } from "../db/schema.js";
import { AppError } from "../errors.js";
import type { CompiledProject } from "../policy/compile.js";
import { formatDuration, parseDuration } from "../policy/index.js";
import { approverOf, isConflicted } from "./approver-directory.js";
import type { ButlerDeps, Reviewer } from "./context.js";
import { lockRequest, ownLine, reviewsOf, tokenRevokedAt, updateIfPending } from "./request-repo.js";
import { callMatches, matchesFiled, staleUnder } from "./request-rules.js";
import {
  decideReview,
  type Staleness,
  supersession,
  type Tally,
  tallyApprovals,
  type Verdict,
} from "./request-state.js";
import type { RequestRow, ReviewRow } from "./request-view.js";
import { announce, decidedMessage, expireInTx, notification } from "./transitions.js";

export type ReviewOutcomeKind = "approved" | "denied" | "recorded" | "unchanged";

/** One press, as review() takes it. */
interface Press {
  reviewer: Reviewer;
  id: string;
  verdict: Verdict;
  ttlSeconds: number | undefined;
  reason: string | undefined;
  now: Date;
}

type Decided = { outcome: ReviewOutcomeKind; row: RequestRow } | { error: AppError };

/**
 * An approver's verdict. Presses are serialised on the request's row lock: the first final
 * decision wins, the same person pressing again changes nothing, and a request needing two
 * approvals needs two different people. Only approvers of the request's project may decide.
 */
export async function review(
  deps: ButlerDeps,
  reviewer: Reviewer,
  id: string,
  verdict: Verdict,
  opts: { ttl?: string | number | undefined; reason?: string | undefined },
): Promise<{ outcome: ReviewOutcomeKind; row: RequestRow }> {
  let ttlSeconds: number | undefined;
  if (opts.ttl !== undefined) {
    const t = parseDuration(opts.ttl);
    if (!t.ok) throw new AppError("INVALID_INPUT", `ttl: ${t.error}`);
    ttlSeconds = t.value;
  }
  // Decided against the newest policies of every project (one query when nothing changed): an
  // approver may just have been removed from this project, or made to conflict by another
  // project's file, through another instance. An approval also reads its own project under the
  // project's lock (decideInTx).
  await deps.policies.refreshAll();
  const press: Press = { reviewer, id, verdict, ttlSeconds, reason: opts.reason, now: deps.clock.now() };
  const result = await deps.db.transaction((tx) => decideInTx(deps, tx, press));
  deps.onEnqueued?.();
  if ("error" in result) throw result.error;
  // This instance serves the new revision before answering; others follow on the notification.
  if (result.outcome === "approved" && result.row.kind !== "one_shot")
    await deps.policies.refreshProject(result.row.project);
  deps.log.info(
    { requestId: id, approver: reviewer.approver, outcome: result.outcome },
    "access request reviewed",
  );
  return result;
}

/** The press, under the request's row lock: the state machine's step, then its writes. */
async function decideInTx(deps: ButlerDeps, tx: Tx, p: Press): Promise<Decided> {
  const r = await lockRequest(tx, p.id);
  // An approval of a pending request decides against the revision it will be added to: the
  // project's lock (after the request's row, the order the sweeper takes them in) keeps a
  // policy import from storing a new baseline between this check and the grant's recompose.
  const deciding = p.verdict === "approve" && r.status === "pending";
  if (deciding) await deps.policies.lockProject(tx, r.project);
  const project = deciding
    ? await deps.policies.compiledIn(tx, r.project)
    : deps.policies.index().projects.get(r.project);
  const index = deps.policies.index();
  const entryOf = (approver: string) => (project ? approverOf(index, project, approver) : undefined);
  // Every review of the request, read once under its lock.
  const reviews = await reviewsOf(tx, r.id);
  const step = decideReview({
    request: r,
    decided: decidedMessage(r),
    approver: p.reviewer.approver,
    verdict: p.verdict,
    ttlSeconds: p.ttlSeconds,
    now: p.now,
    mine: reviews.find((v) => v.approver === p.reviewer.approver),
    conflicted: isConflicted(index, p.reviewer.approver),
    entry: entryOf(p.reviewer.approver),
  });
  switch (step.step) {
    case "refuse":
      await deps.audit.appendInTx(tx, [
        {
          type: "access_request.review_refused",
          ...lineOf(r),
          reason: step.audit,
          details: {
            request_id: r.id,
            approver: p.reviewer.approver,
            channel: p.reviewer.channel,
            verdict: p.verdict,
          },
        },
      ]);
      return { error: new AppError("FORBIDDEN", step.error) };
    case "expire":
      await expireInTx(deps, tx, r, p.now);
      return { error: new AppError("EXPIRED", step.error) };
    case "unchanged":
      return { outcome: "unchanged", row: r };
    case "reject":
      return { error: new AppError(step.code, step.error) };
  }
  if (p.verdict === "approve") {
    const stale = await whyStale(tx, r, project!, p.now, p.reviewer.approver, reviews);
    if (stale) return supersede(deps, tx, r, p, stale);
  }
  const inserted = await tx
    .insert(requestReviews)
    .values({
      requestId: r.id,
      approver: p.reviewer.approver,
      verdict: p.verdict,
      channel: p.reviewer.channel,
      ttlSeconds: p.ttlSeconds ?? null,
      createdAt: p.now,
    })
    .onConflictDoNothing()
    .returning();
  if (inserted.length === 0) return { outcome: "unchanged", row: r };
  if (p.verdict === "deny") return deny(deps, tx, r, p);
  const others = reviews.filter((v) => v.approver !== p.reviewer.approver);
  const tally = tallyApprovals(r, [...others, ...inserted], p.reviewer.approver, entryOf, p.now);
  if (tally.step === "record") return recordApproval(deps, tx, r, p, tally.approvals);
  return approve(deps, tx, r, project!, p, tally);
}

/** The audit line's fields every event about a request carries. */
function lineOf(r: RequestRow) {
  return { agent: r.agent, project: r.project, action: r.action, resource: r.resource };
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
): Promise<Staleness | undefined> {
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
  const revokedAt = await tokenRevokedAt(tx, r.tokenId);
  if (revokedAt)
    return policy(`the agent token that filed it (${r.tokenId}) was revoked at ${revokedAt.toISOString()}`);
  const stale = staleUnder(r, project, now);
  return stale === undefined ? undefined : policy(stale);
}

/** Nothing is granted: the request is superseded, and the agent and the cards are told why. */
async function supersede(
  deps: ButlerDeps,
  tx: Tx,
  r: RequestRow,
  p: Press,
  stale: Staleness,
): Promise<Decided> {
  const words = supersession(stale);
  if (stale.check === "integrity")
    deps.log.error(
      { requestId: r.id, detail: stale.detail },
      "access request does not match its audit record; not granted",
    );
  const superseded = await updateIfPending(tx, r.id, {
    status: "superseded",
    decidedAt: p.now,
    decidedVia: p.reviewer.channel,
    decisionReason: words.decisionReason,
  });
  await deps.audit.appendInTx(tx, [
    {
      type: "access_request.superseded",
      ...lineOf(r),
      reason: words.audit,
      details: {
        request_id: r.id,
        check: stale.check,
        approver: p.reviewer.approver,
        channel: p.reviewer.channel,
      },
    },
  ]);
  const told = notification(superseded!, "request_superseded", { reason: words.toAgent });
  await announce(deps, tx, superseded!, told, words.cardNote, p.now);
  return { error: new AppError("SUPERSEDED", words.error) };
}

async function deny(deps: ButlerDeps, tx: Tx, r: RequestRow, p: Press): Promise<Decided> {
  const { approver, channel } = p.reviewer;
  const denied = await updateIfPending(tx, r.id, {
    status: "denied",
    decidedAt: p.now,
    decidedBy: approver,
    decidedVia: channel,
    decisionReason: p.reason ?? null,
  });
  await deps.audit.appendInTx(tx, [
    {
      type: "access_request.denied",
      ...lineOf(r),
      reason: p.reason ?? `denied by ${approver}`,
      details: { request_id: r.id, approver, channel },
    },
  ]);
  const note = `Denied by ${approver} via ${channel}${p.reason ? `: ${p.reason}` : ""}`;
  await announce(
    deps,
    tx,
    denied!,
    notification(denied!, "request_denied", { reason: p.reason }),
    note,
    p.now,
  );
  return { outcome: "denied", row: denied! };
}

/** An approval that is not yet the last one needed: recorded, with its own audit line. */
async function recordApproval(
  deps: ButlerDeps,
  tx: Tx,
  r: RequestRow,
  p: Press,
  approvals: number,
): Promise<Decided> {
  const { approver, channel } = p.reviewer;
  const [recordedLine] = await deps.audit.appendInTx(tx, [
    {
      type: "access_request.approval_recorded",
      ...lineOf(r),
      reason: `${approvals} of ${r.approvalsRequired} approvals`,
      details: {
        request_id: r.id,
        approver,
        channel,
        approvals,
        approvals_required: r.approvalsRequired,
      },
    },
  ]);
  await tx
    .update(requestReviews)
    .set({ eventId: recordedLine!.event_id })
    .where(and(eq(requestReviews.requestId, r.id), eq(requestReviews.approver, approver)));
  const note = `${approver} approved via ${channel} (${approvals} of ${r.approvalsRequired} approvals)`;
  await announce(deps, tx, r, notification(r, "approval_recorded"), note, p.now);
  return { outcome: "recorded", row: r };
}

/** The final approval: the request is approved and its grant applied, in this transaction. */
async function approve(
  deps: ButlerDeps,
  tx: Tx,
  r: RequestRow,
  project: CompiledProject,
  p: Press,
  t: Extract<Tally, { step: "approve" }>,
): Promise<Decided> {
  const by = t.approvedBy.join(", ");
  const approved = await updateIfPending(tx, r.id, {
    status: "approved",
    decidedAt: p.now,
    decidedBy: by,
    decidedVia: p.reviewer.channel,
    grantedTtlSeconds: t.ttlSeconds,
  });
  const approvedLine: AuditEventInput = {
    type: "access_request.approved",
    ...lineOf(r),
    reason: `approved by ${by} for ${formatDuration(t.ttlSeconds)}`,
    details: {
      request_id: r.id,
      approver: p.reviewer.approver,
      approved_by: t.approvedBy,
      channel: p.reviewer.channel,
      ttl: formatDuration(t.ttlSeconds),
    },
  };
  const revision =
    r.kind === "one_shot"
      ? await applyOneShot(deps, tx, r, t, approvedLine, project.revision, p.now)
      : (await applyGrant(deps, tx, r, t, approvedLine, p.now)).revision;
  const told = notification(approved!, "grant_ready", {
    grantId: r.id,
    expiresAt: t.expiresAt.toISOString(),
    revision,
  });
  const note = `Approved by ${by} via ${p.reviewer.channel}; the grant expires ${t.expiresAt.toISOString()}`;
  await announce(deps, tx, approved!, told, note, p.now);
  return { outcome: "approved", row: approved! };
}

type Approval = Extract<Tally, { step: "approve" }>;

/** Exactly the approved call, once: a single-use grant, not a policy change. Returns the revision in force. */
async function applyOneShot(
  deps: ButlerDeps,
  tx: Tx,
  r: RequestRow,
  t: Approval,
  approvedLine: AuditEventInput,
  revision: number,
  now: Date,
): Promise<number> {
  await tx.insert(singleUseGrants).values({
    id: r.id,
    project: r.project,
    agent: r.agent,
    action: r.action,
    resource: r.resource,
    callHash: r.callHash ?? "",
    idempotencyKey: r.idempotencyKey,
    approvedBy: t.approvedBy,
    createdAt: now,
    expiresAt: t.expiresAt,
  });
  await deps.audit.appendInTx(tx, [
    approvedLine,
    {
      type: "grant.one_shot",
      ...lineOf(r),
      reason: `single-use grant for exactly the approved call, usable once until ${t.expiresAt.toISOString()}`,
      details: {
        grant_id: r.id,
        call_sha256: r.callHash,
        approved_by: t.approvedBy.join(", "),
        expires: t.expiresAt.toISOString(),
      },
    },
  ]);
  return revision;
}

/** A time-bound grant: a new policy revision with it. Returns that revision. */
/**
 * A time-bound grant for request `r` (approved, or opened by break-glass): its row, a new policy
 * revision with it, and `leading` (what decided it) with `grant.applied`, in `tx`. Returns the
 * revision and the audit lines written.
 */
export async function applyGrant(
  deps: ButlerDeps,
  tx: Tx,
  r: RequestRow,
  t: { approvedBy: string[]; expiresAt: Date },
  leading: AuditEventInput,
  now: Date,
  opts: { cause?: string; reason?: string; details?: Record<string, unknown> } = {},
): Promise<{ revision: number; lines: AuditLine[] }> {
  await tx.insert(grants).values({
    id: r.id,
    project: r.project,
    agent: r.agent,
    action: r.action,
    resource: r.resource,
    branch: r.branch,
    resourceGlob: r.resourceGlob,
    approvedBy: t.approvedBy,
    createdAt: now,
    expiresAt: t.expiresAt,
  });
  const applied = await deps.policies.recompose(tx, r.project, opts.cause ?? `grant:${r.id}`);
  const lines = await deps.audit.appendInTx(tx, [
    leading,
    {
      type: "grant.applied",
      ...lineOf(r),
      reason: opts.reason ?? `policy reloaded for ${r.project} (1 grant added)`,
      details: {
        grant_id: r.id,
        branch: r.branch ?? undefined,
        revision: applied.revision,
        before_hash: applied.beforeHash,
        after_hash: applied.afterHash,
        approved_by: t.approvedBy.join(", "),
        expires: t.expiresAt.toISOString(),
        ...opts.details,
      },
    },
  ]);
  return { revision: applied.revision, lines };
}
