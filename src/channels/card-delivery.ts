import type { Butler } from "../butler/butler-service.js";
import type { CardMessage } from "../butler/transitions.js";
import type { OutboxHandler } from "../outbox/outbox.js";
import { RetryLater } from "../outbox/retry-later.js";
import type { ApprovalChannel } from "./channel.js";

/** The Butler's side of a card: the card itself, who sees it, and where it was posted. */
export type CardSource = Pick<Butler, "card" | "audienceFor" | "postedCardsOf" | "recordPostedCards">;

/**
 * The outbox handlers that put cards on the approval surfaces: `card.post` for a new request (on
 * each surface, to its audience), `card.update` after every change (each posted card is edited in
 * place, with a note saying what happened). One message per request and surface, so that one
 * platform failing never holds up another.
 */
export function cardHandlers(
  butler: CardSource,
  channels: readonly ApprovalChannel[],
): { "card.post": OutboxHandler<"card.post">; "card.update": OutboxHandler<"card.update"> } {
  const channelOf = (payload: CardMessage) => {
    const channel = channels.find((c) => c.kind === payload.channel);
    if (!channel) throw new Error(`channel ${payload.channel} is not configured`);
    return channel;
  };
  return {
    async "card.post"(payload) {
      const id = payload.requestId;
      const channel = channelOf(payload);
      const card = await butler.card(id);
      // After a partial failure the message is retried: targets that have the card are skipped.
      const already = (await butler.postedCardsOf(id))
        .filter((p) => p.channel === channel.kind)
        .map((p) => p.chatId);
      const result = await channel.post(
        card,
        await butler.audienceFor(card.project, channel.kind, payload.audience),
        already,
      );
      await butler.recordPostedCards(id, result.posted);
      if (result.failed.length > 0) {
        const message = result.failed.map((f) => `${f.target}: ${f.error}`).join("; ");
        const after = Math.max(0, ...result.failed.map((f) => f.retryAfterMs ?? 0));
        throw after > 0 ? new RetryLater(message, after) : new Error(message);
      }
      return {
        auditType: "card.posted",
        project: card.project,
        agent: card.agent,
        details: { request_id: id, channel: channel.kind, cards: result.posted.length + already.length },
      };
    },
    async "card.update"(payload) {
      const id = payload.requestId;
      const channel = channelOf(payload);
      const card = await butler.card(id);
      for (const posted of await butler.postedCardsOf(id)) {
        if (posted.channel !== channel.kind) continue;
        await channel.update(
          { channel: channel.kind, chatId: posted.chatId, messageId: posted.messageId },
          card,
          payload.note,
        );
      }
      return undefined;
    },
  };
}
