import { formatDuration } from "../policy/index.js";
import type { ApproverDef } from "../policy/types.js";
import type { AccessRequestView, RequestRow, ReviewRow } from "./request-view.js";

/**
 * The review state machine, pure: what one press on a request does, given what is stored and the
 * policy in force. The orchestration (review.ts) reads the facts under the request's lock, asks
 * these functions, and writes what they decide.
 */

export type Verdict = "approve" | "deny";

/** What review.ts knows about a press before it writes anything. */
export interface ReviewFacts {
  request: Pick<
    RequestRow,
    "id" | "agent" | "project" | "status" | "expiresAt" | "riskTier" | "requestedTtlSeconds"
  >;
  /** Already written by `decidedMessage`: "already approved by jordan". */
  decided: string;
  approver: string;
  verdict: Verdict;
  /** The TTL the approver chose, if any (seconds). */
  ttlSeconds: number | undefined;
  now: Date;
  /** The presser's earlier review of this request, if any. */
  mine: Pick<ReviewRow, "verdict"> | undefined;
  /** Whether the policy files disagree on who the presser is (then they decide nothing). */
  conflicted: boolean;
  /** The presser's entry among the project's approvers in force (undefined: not an approver). */
  entry: Pick<ApproverDef, "tiers"> | undefined;
}

export type ReviewStep =
  /** Not this person's to decide: audited as refused, answered FORBIDDEN. */
  | { step: "refuse"; audit: string; error: string }
  /** Past its deadline while pending: expire it, answer EXPIRED. */
  | { step: "expire"; error: string }
  /** The same press again: nothing changes. */
  | { step: "unchanged" }
  /** A press that contradicts what is stored: nothing changes. */
  | { step: "reject"; code: "ALREADY_DECIDED" | "INVALID_INPUT"; error: string }
  /** A pending request this person may decide: approvals go on to the stale check, then the tally. */
  | { step: "proceed" };

/** The first rule a press breaks, in the order people expect to hear them, or "proceed". */
export function decideReview(f: ReviewFacts): ReviewStep {
  const r = f.request;
  if (f.approver === r.agent)
    return {
      step: "refuse",
      audit: `${f.approver} filed this request and cannot decide it`,
      error: "an agent never decides its own request",
    };
  if (f.conflicted)
    return {
      step: "refuse",
      audit: `the policy files disagree on who ${f.approver} is`,
      error: `the policy files define approver '${f.approver}' differently; nobody decides as '${f.approver}' until they agree (run butler policy validate)`,
    };
  if (!f.entry)
    return {
      step: "refuse",
      audit: `${f.approver} is not an approver for ${r.project}`,
      error: `you are not an approver for ${r.project}`,
    };
  if (!f.entry.tiers.includes(r.riskTier))
    return {
      step: "refuse",
      audit: `${f.approver} may not decide ${r.riskTier}-risk requests`,
      error: `you may not decide ${r.riskTier}-risk requests of ${r.project}`,
    };
  if (r.status === "pending" && r.expiresAt <= f.now)
    return {
      step: "expire",
      error: `request ${r.id} expired at ${r.expiresAt.toISOString()} before anyone decided`,
    };
  if (r.status !== "pending") {
    if (f.mine?.verdict === f.verdict) return { step: "unchanged" };
    return { step: "reject", code: "ALREADY_DECIDED", error: `request ${r.id} is ${f.decided}` };
  }
  if (f.ttlSeconds !== undefined && f.ttlSeconds > r.requestedTtlSeconds)
    return {
      step: "reject",
      code: "INVALID_INPUT",
      error: `ttl: an approver may shorten the requested ${formatDuration(r.requestedTtlSeconds)}, not lengthen it`,
    };
  // A pending request with a review of this person's has only approvals (a denial decides it).
  if (f.mine && f.mine.verdict !== f.verdict)
    return {
      step: "reject",
      code: "ALREADY_DECIDED",
      error: `you already ${f.mine.verdict === "approve" ? "approved" : "denied"} request ${r.id}`,
    };
  return { step: "proceed" };
}

/** What counting the approvals decides once this person's approval is stored. */
export type Tally =
  | { step: "record"; approvals: number }
  | { step: "approve"; ttlSeconds: number; approvedBy: string[]; expiresAt: Date };

/**
 * Counts the approvals of a pending request after `approver` approved it. Approvals count while
 * their approver still decides this tier of this project under the policy in force (someone
 * removed since, or limited to lower tiers, no longer counts; the agent never does). The final
 * approval grants for the shortest TTL any approver chose, from now.
 */
export function tallyApprovals(
  r: Pick<RequestRow, "agent" | "riskTier" | "approvalsRequired" | "requestedTtlSeconds">,
  reviews: readonly Pick<ReviewRow, "approver" | "verdict" | "createdAt" | "ttlSeconds">[],
  approver: string,
  entryOf: (approver: string) => Pick<ApproverDef, "tiers"> | undefined,
  now: Date,
): Tally {
  const approvals = reviews
    .filter((v) => v.verdict === "approve")
    .toSorted((a, b) => a.createdAt.getTime() - b.createdAt.getTime())
    .filter(
      (a) =>
        a.approver === approver ||
        (a.approver !== r.agent && (entryOf(a.approver)?.tiers.includes(r.riskTier) ?? false)),
    );
  if (approvals.length < r.approvalsRequired) return { step: "record", approvals: approvals.length };
  const ttlSeconds = Math.min(
    r.requestedTtlSeconds,
    ...approvals.map((a) => a.ttlSeconds ?? r.requestedTtlSeconds),
  );
  return {
    step: "approve",
    ttlSeconds,
    approvedBy: approvals.map((a) => a.approver),
    expiresAt: new Date(now.getTime() + ttlSeconds * 1000),
  };
}

/** What the agent and the cards are told when a request no longer holds at its decision. */
const SUPERSEDED = "the policy changed since this was filed; ask again";
/** The same, when the stored request no longer matches what was filed (it was edited in the database). */
const ALTERED = "this request was altered after it was filed; ask again";

/** Why a pending request can no longer be granted as filed (see review.ts whyStale). */
export interface Staleness {
  check: "integrity" | "policy";
  detail: string;
}

/**
 * The words of a supersession for each audience. The agent hears which policy check failed, but
 * not which tamper check fired (that is for the log, the audit line and the approver).
 */
export function supersession(stale: Staleness) {
  const lead = stale.check === "policy" ? SUPERSEDED : ALTERED;
  return {
    /** The audit line's reason. */
    audit: `${lead}: ${stale.detail}`,
    /** Stored as the request's decision reason (what the API shows the agent). */
    decisionReason: stale.check === "policy" ? stale.detail : ALTERED,
    toAgent: stale.check === "policy" ? `${lead} (${stale.detail})` : lead,
    cardNote: `Superseded, nothing granted: ${lead} (${stale.detail})`,
    error: `nothing was granted: ${lead} (${stale.detail}); the request is superseded and the agent was told`,
  };
}

/** What the person who pressed a button in a chat is told. */
export function pressAnswer(
  outcome: "approved" | "denied" | "recorded" | "unchanged",
  v: Pick<AccessRequestView, "status" | "approvals" | "approvals_required" | "decision">,
): string {
  if (outcome === "recorded") return `Recorded: ${v.approvals.length} of ${v.approvals_required} approvals`;
  if (outcome === "unchanged" && v.status === "pending")
    return `You already approved this request: ${v.approvals.length} of ${v.approvals_required} approvals, waiting for ${v.approvals_required - v.approvals.length} more from another approver`;
  if (outcome === "unchanged")
    return `Nothing changed: the request is already ${v.status}${v.decision?.by ? ` by ${v.decision.by}` : ""}`;
  return `Request ${outcome}`;
}
