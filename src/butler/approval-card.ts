import type { RequestStatus } from "../db/schema.js";
import type { RiskTier } from "../policy/types.js";
import type { GrantState } from "./request-view.js";

/**
 * The channel-neutral view of an access request that every approval surface renders. Built from
 * the database at the moment of rendering, so a card always shows the current truth.
 */
export interface ApprovalCard {
  requestId: string;
  project: string;
  agent: string;
  action: string;
  resource: string;
  branch: string | undefined;
  /** The resource glob the grant would name instead of `resource` exactly (the agent asked for it). */
  resourcePattern: string | undefined;
  /** What the grant would allow besides the denied call, as short sentences (empty for one-shot). */
  blastRadius: string[];
  /** The audit lines of past denials the grant would have allowed (the newest per call), to open. */
  pastDenials: { eventId: string; url: string }[];
  status: RequestStatus;
  /** Agent-written; untrusted. Every renderer escapes it for its own markup and labels it as the agent's. */
  reason: string;
  riskTier: RiskTier;
  approvalsRequired: number;
  approvedBy: string[];
  requestedTtlSeconds: number;
  maxTtlSeconds: number;
  /** True when approval allows exactly one call, once (require_approval), instead of a policy change. */
  oneShot: boolean;
  /** The unified diff of the effective policy that approval would apply. May be long; renderers truncate. */
  diff: string;
  /** When the request expires if nobody decides (ISO 8601). */
  requestExpiresAt: string;
  decidedBy: string | undefined;
  decidedVia: string | undefined;
  decisionReason: string | undefined;
  grantExpiresAt: string | undefined;
  /** What became of the grant after approval: active, expired (its TTL ran out), revoked, or used (one-shot). */
  grantState: GrantState | undefined;
  /** Who revoked the grant, when `grantState` is "revoked". */
  grantRevokedBy: string | undefined;
  grantRevokedAt: string | undefined;
  /** Approve and remember: who asked to make the grant a rule, and where it was written once done. */
  rememberedBy: string[];
  rememberedTo: string | undefined;
  /** For a break-glass: who opened it (no approvers were asked). */
  breakGlassBy: string | undefined;
  /** Where the full proposal can be seen. */
  url: string;
}
