import type { ApprovalCard } from "../butler/approval-card.js";
import type { ErrorCode } from "../errors.js";
import type { ApproverDef } from "../policy/types.js";

/**
 * The contract every approval surface implements (Slack, Telegram, the web dashboard). Adapters
 * only translate: they post and update cards, and report button presses to the Butler, which
 * decides. This is the only file of channels/ the Butler imports.
 */
export type ChannelKind = "slack" | "telegram" | "dashboard" | "api" | "cli";

/** Enough to find and edit a posted card later. Slack: channel + ts; Telegram: chat_id + message_id. */
export interface PostedCard {
  channel: ChannelKind;
  chatId: string;
  messageId: string;
}

/** A person pressed Approve or Deny. Identity is the channel's own user id, not yet resolved. */
export interface ReviewInput {
  requestId: string;
  verdict: "approve" | "deny";
  actor: { channel: ChannelKind; userId: string; displayName?: string };
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

export interface PostResult {
  posted: PostedCard[];
  failed: { target: string; error: string }[];
}

export interface ApprovalChannel {
  readonly kind: ChannelKind;
  /** Starts receiving button presses and forwards each one to `onReview`. */
  start(onReview: ReviewHandler): Promise<void>;
  /** Stops receiving; in-flight handlers are allowed to finish. */
  stop(): Promise<void>;
  /** Posts the card to the approvers (or rooms) this channel reaches for them. */
  post(card: ApprovalCard, approvers: readonly ApproverDef[]): Promise<PostResult>;
  /** Re-renders a posted card (decided here or elsewhere, expired, revoked); removes buttons once final. */
  update(posted: PostedCard, card: ApprovalCard): Promise<void>;
}
