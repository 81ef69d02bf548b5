import type { ErrorCode } from "../errors.js";
import type { ApprovalCard } from "./approval-card.js";

/**
 * What the Butler offers approval surfaces and asks of them, in the Butler's own words: the
 * surfaces (channels/channel.ts re-exports these for the adapters), a press as an adapter reports
 * it, and who should see a project's cards. The workflow core depends on nothing in channels/.
 */
export type ChannelKind = "slack" | "telegram" | "dashboard" | "api" | "cli";

/** A person pressed Approve or Deny. Identity is the channel's own user id, not yet resolved. */
export interface ReviewInput {
  requestId: string;
  /** `remember`: make the approved grant a permanent rule of the policy file (see remember.ts). */
  verdict: "approve" | "deny" | "remember";
  actor: {
    channel: ChannelKind;
    userId: string;
    displayName?: string | undefined;
    /** The account's email as the platform reports it (Slack), for approvers named by email. */
    email?: string | undefined;
  };
  /** A shorter TTL chosen when approving (seconds). */
  ttlSeconds?: number;
  /** Why, when denying; reaches the agent. */
  reason?: string;
}

/** What the adapter shows the presser. `ok: false` is shown privately to that person only. */
export type ReviewOutcome =
  | { ok: true; card: ApprovalCard; message: string }
  | { ok: false; code: ErrorCode; message: string };

export type ReviewHandler = (input: ReviewInput) => Promise<ReviewOutcome>;

/**
 * Who should see a card on one platform: the project's configured rooms (`settings.channels`), or
 * when there are none, each approver directly (by user id on that platform, or by email on Slack).
 */
export interface Audience {
  routes: string[] | undefined;
  approvers: { id: string; userIds: string[]; emails: string[] }[];
}
