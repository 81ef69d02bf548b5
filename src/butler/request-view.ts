import type { accessRequests, grants, requestReviews } from "../db/schema.js";
import { type BlastRadius, cardFacts, forAgent } from "../policy/blast-radius.js";
import { formatDuration } from "../policy/index.js";
import type { RiskTier } from "../policy/types.js";
import type { ApprovalCard } from "./approval-card.js";

export type RequestRow = typeof accessRequests.$inferSelect;
export type GrantRow = typeof grants.$inferSelect;
export type ReviewRow = typeof requestReviews.$inferSelect;

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
  /** The resource glob the grant would name instead of `resource` exactly, when the agent asked for one. */
  resource_pattern: string | null;
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
  /** What the grant would allow besides the denied call (null for a one-shot request). */
  blast_radius: BlastRadius | null;
  /** For a one-shot request: the exact call (agent-written parameters) and its hash. */
  call: { params: Record<string, unknown>; operation: string | null; sha256: string } | null;
  decision: { by: string | null; via: string | null; at: string; reason: string | null } | null;
  grant: { id: string; expires_at: string; revoked_at: string | null; used_at: string | null } | null;
}

/** A request as its agent sees it: what approvers see of other agents' calls left out. */
export function agentView(v: AccessRequestView): AccessRequestView {
  return v.blast_radius ? { ...v, blast_radius: forAgent(v.blast_radius) } : v;
}

/** A grant as the API shows it. */
export interface GrantView {
  id: string;
  project: string;
  agent: string;
  action: string;
  resource: string;
  branch: string | null;
  /** The resource glob the grant names, when it was asked for one (`resource` is the denied call's). */
  resource_pattern: string | null;
  approved_by: string[];
  created_at: string;
  expires_at: string;
  revoked_at: string | null;
  revoked_by: string | null;
  state: Exclude<GrantState, "used">;
  seconds_left: number;
}

/** A request's grant (a policy grant or a single-use one), as its view and card need it. */
export type GrantOfRequest = Pick<GrantRow, "id" | "expiresAt" | "revokedAt" | "revokedBy"> & {
  usedAt: Date | null;
};

/** A request with its view and its grant. */
export interface Viewed {
  row: RequestRow;
  view: AccessRequestView;
  grant: GrantOfRequest | undefined;
}

/** A request as the API shows it, from its row, its approvals and its grant. */
export function toView(
  r: RequestRow,
  reviews: readonly ReviewRow[],
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
    resource_pattern: r.resourceGlob,
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
    blast_radius: r.blastRadius,
    call:
      r.kind === "one_shot"
        ? {
            // What data_protection redacts is never shown; the approval stays bound to the exact call.
            params: r.callParamsShown ?? r.callParams ?? {},
            operation: r.callOperation,
            sha256: r.callHash ?? "",
          }
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

/**
 * What became of a grant: one word per state wherever it is shown (the API's grants, cards, A2A
 * artifacts, audit lines). `used` is a one-shot approval's call made.
 */
export type GrantState = "active" | "expired" | "revoked" | "used";

/** A grant's state at `now`. */
export function grantState(
  g: { revokedAt: Date | null; usedAt?: Date | null; expiresAt: Date },
  now: Date,
): GrantState {
  if (g.revokedAt) return "revoked";
  if (g.usedAt) return "used";
  return g.expiresAt.getTime() <= now.getTime() ? "expired" : "active";
}

/**
 * The card every approval surface renders, from a request and its grant (no queries).
 * `maxTtlSeconds` is the project's longest grant (undefined: the project has no policy in force).
 */
export function cardOf(
  { row: r, view: v, grant: g }: Viewed,
  at: { now: Date; maxTtlSeconds: number | undefined; publicUrl: string },
): ApprovalCard {
  return {
    requestId: r.id,
    project: r.project,
    agent: r.agent,
    action: r.action,
    resource: r.resource,
    branch: r.branch ?? undefined,
    resourcePattern: r.resourceGlob ?? undefined,
    blastRadius: r.blastRadius ? cardFacts(r.blastRadius) : [],
    pastDenials: (r.blastRadius?.history?.examples ?? [])
      .filter((e) => /^evt_[a-z0-9]{16}$/.test(e.event_id))
      .map((e) => ({ eventId: e.event_id, url: `${at.publicUrl}/dashboard/audit?event=${e.event_id}` })),
    status: r.status,
    reason: r.reason,
    riskTier: r.riskTier,
    approvalsRequired: r.approvalsRequired,
    approvedBy: v.approvals.map((a) => a.approver),
    requestedTtlSeconds: r.requestedTtlSeconds,
    maxTtlSeconds: at.maxTtlSeconds ?? r.requestedTtlSeconds,
    diff: r.proposalDiff,
    requestExpiresAt: r.expiresAt.toISOString(),
    decidedBy: r.decidedBy ?? undefined,
    decidedVia: r.decidedVia ?? undefined,
    decisionReason: r.decisionReason ?? undefined,
    grantExpiresAt: v.grant?.expires_at,
    oneShot: r.kind === "one_shot",
    grantState: g ? grantState(g, at.now) : undefined,
    grantRevokedBy: g?.revokedBy ?? undefined,
    grantRevokedAt: g?.revokedAt?.toISOString(),
    rememberedBy: r.rememberedBy,
    breakGlassBy: r.breakGlassBy ?? undefined,
    rememberedTo: r.rememberedAt ? (r.rememberedTo ?? undefined) : undefined,
    // The dashboard's page for the request (it asks a person to sign in first), not the API:
    // a chat card's link is opened in a browser, where the API would answer 401.
    url: `${at.publicUrl}/dashboard/requests/${r.id}`,
  };
}

/** A grant as the API shows it, at `now`. */
export function grantView(g: GrantRow, now: Date): GrantView {
  const state = grantState({ revokedAt: g.revokedAt, expiresAt: g.expiresAt }, now) as GrantView["state"];
  return {
    id: g.id,
    project: g.project,
    agent: g.agent,
    action: g.action,
    resource: g.resource,
    branch: g.branch,
    resource_pattern: g.resourceGlob,
    approved_by: g.approvedBy,
    created_at: g.createdAt.toISOString(),
    expires_at: g.expiresAt.toISOString(),
    revoked_at: g.revokedAt?.toISOString() ?? null,
    revoked_by: g.revokedBy,
    state,
    seconds_left: state === "active" ? Math.floor((g.expiresAt.getTime() - now.getTime()) / 1000) : 0,
  };
}
