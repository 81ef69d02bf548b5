import type { FastifyInstance } from "fastify";
import type { ApprovalCard } from "../butler/approval-card.js";
import type { Audience, ChannelKind, ReviewHandler } from "../butler/channel-port.js";
import type { AlertActionInput, AlertActionOutcome } from "../gateway/alert-actions.js";
import type { SecurityAlert } from "../gateway/alerts.js";

/**
 * The contract every approval surface implements (Slack, Telegram, the web dashboard). Adapters
 * only translate: they post and update cards, and report button presses to the Butler, which
 * decides. The types the Butler defines for them are re-exported here.
 */
export type {
  Audience,
  ChannelKind,
  ReviewHandler,
  ReviewInput,
  ReviewOutcome,
} from "../butler/channel-port.js";

/** Enough to find and edit a posted card later. Slack: channel + ts; Telegram: chat_id + message_id. */
export interface PostedCard {
  channel: ChannelKind;
  chatId: string;
  messageId: string;
}

export interface PostResult {
  posted: PostedCard[];
  /** Targets that did not get the card; retried later (after `retryAfterMs` when the platform said so). */
  failed: { target: string; error: string; retryAfterMs?: number | undefined }[];
}

/** What an adapter may ask of the Butler besides reviews. */
export interface ChannelHooks {
  /** Records a request the adapter refused (bad signature, wrong secret) in the audit log. */
  rejected(channel: ChannelKind, reason: string, details: Record<string, unknown>): Promise<void>;
  /** Redeems a one-time link code for the account `userId`; resolves with the approver it binds. */
  redeemLink(code: string, channel: ChannelKind, userId: string): Promise<string>;
  /**
   * Records an authentic request (signed, or with the right secret) that the adapter acknowledged
   * but could not act on: an interaction of an unknown shape, a button it does not know.
   */
  ignored(channel: ChannelKind, reason: string, details: Record<string, unknown>): Promise<void>;
  /** A press of a security alert's button (acknowledge, suspend, restore trust); what to tell the presser. */
  alertAction(input: AlertActionInput): Promise<AlertActionOutcome>;
}

/** Why a channel could not start; `auth` when the platform refused its token (a configuration error). */
export class ChannelStartError extends Error {
  constructor(
    message: string,
    readonly auth: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface ApprovalChannel {
  readonly kind: ChannelKind;
  /**
   * Starts receiving button presses and forwards each one to `onReview`. May be called again after
   * it failed (a `ChannelStartError` when the platform said why): it then tries again.
   */
  start(onReview: ReviewHandler): Promise<void>;
  /** Stops receiving; in-flight handlers are allowed to finish. */
  stop(): Promise<void>;
  /** Posts the card to its audience on this platform, skipping the targets in `already`. */
  post(card: ApprovalCard, audience: Audience, already?: readonly string[]): Promise<PostResult>;
  /**
   * Re-renders a posted card (decided here or elsewhere, expired, revoked) and removes its buttons
   * once final. `note` says what just happened (a thread reply in Slack, a reply in Telegram).
   */
  update(posted: PostedCard, card: ApprovalCard, note?: string): Promise<void>;
  /** Adds the adapter's HTTP endpoints (webhooks) to the server, if it has any. */
  mount?(app: FastifyInstance): Promise<void>;
  /** Posts a security alert to one of the project's security rooms on this platform (`security:` in the policy). */
  postAlert?(alert: SecurityAlert, target: string): Promise<PostResult>;
}
