import { and, eq, isNull, lt } from "drizzle-orm";
import type { AuditLog } from "../audit/audit-log.js";
import type { Clock } from "../clock.js";
import type { Db } from "../db/client.js";
import { webhookEvents } from "../db/schema.js";

/** How long the instance that claimed an event may take to run its reactions before another delivery takes over. */
export const REACTION_LEASE_MS = 5 * 60_000;

/** What a delivery may do with a provider event. */
export type Claim =
  /** The first delivery: recorded (`webhook.received`); `react` when reactions apply. */
  | { status: "new"; eventId: string; react: boolean }
  /** A replay: recorded as `webhook.duplicate`; nothing runs. */
  | { status: "duplicate"; eventId: string; firstEventId: string | null }
  /** A replay of an event whose reactions were claimed but never finished (the instance died): this delivery runs them. */
  | { status: "resumed"; eventId: string; firstEventId: string | null };

export interface WebhookEventInput {
  provider: string;
  /** `id:<provider event id>` or `sha256:<body hash>` (see the table's comment). */
  key: string;
  /** Details of the audit line: provider, provider_event_id, provider_event_type, body_sha256. */
  details: Record<string, unknown>;
  /** Whether any reaction applies to the event. */
  hasReactions: boolean;
}

/**
 * Provider webhook events, each processed once. The event's key is claimed in the same
 * transaction as its audit line: of two deliveries at the same moment (on one instance or two),
 * the second waits on the key's unique index and then finds it taken. Reactions run after the
 * commit, under a lease: a delivery that finds the reactions unfinished and the lease run out
 * (the first instance died) runs them again, with the same idempotency keys.
 */
export function createWebhookEvents(deps: { db: Db; audit: Pick<AuditLog, "appendInTx">; clock: Clock }) {
  const { db, audit, clock } = deps;
  return {
    async claim(input: WebhookEventInput): Promise<Claim> {
      const now = clock.now();
      const lease = new Date(now.getTime() + REACTION_LEASE_MS);
      const pk = and(eq(webhookEvents.provider, input.provider), eq(webhookEvents.eventKey, input.key));
      return db.transaction(async (tx) => {
        const [fresh] = await tx
          .insert(webhookEvents)
          .values({
            provider: input.provider,
            eventKey: input.key,
            receivedAt: now,
            claimedUntil: lease,
            reactionsDoneAt: input.hasReactions ? null : now,
          })
          .onConflictDoNothing()
          .returning({ provider: webhookEvents.provider });
        if (fresh) {
          const [line] = await audit.appendInTx(tx, [
            { type: "webhook.received", at: now, details: input.details },
          ]);
          await tx.update(webhookEvents).set({ receivedEventId: line!.event_id }).where(pk);
          return { status: "new" as const, eventId: line!.event_id, react: input.hasReactions };
        }
        // Taken: by a delivery that finished, or one still running its reactions (its lease holds),
        // or one that died on the way (its lease ran out: this delivery takes over).
        const [takeOver] = await tx
          .update(webhookEvents)
          .set({ claimedUntil: lease })
          .where(and(pk, isNull(webhookEvents.reactionsDoneAt), lt(webhookEvents.claimedUntil, now)))
          .returning({ first: webhookEvents.receivedEventId });
        const [row] = takeOver
          ? [{ first: takeOver.first }]
          : await tx.select({ first: webhookEvents.receivedEventId }).from(webhookEvents).where(pk);
        const firstEventId = row?.first ?? null;
        const [line] = await audit.appendInTx(tx, [
          {
            type: "webhook.duplicate",
            at: now,
            details: { ...input.details, first_event_id: firstEventId, resumed_reactions: Boolean(takeOver) },
          },
        ]);
        return takeOver
          ? { status: "resumed" as const, eventId: line!.event_id, firstEventId }
          : { status: "duplicate" as const, eventId: line!.event_id, firstEventId };
      });
    },

    /**
     * The delivery that claimed the event could not process it (it answers 503): its lease ends
     * now, so that the provider's next delivery resumes the reactions at once.
     */
    async release(provider: string, key: string): Promise<void> {
      await db
        .update(webhookEvents)
        .set({ claimedUntil: new Date(0) })
        .where(
          and(
            eq(webhookEvents.provider, provider),
            eq(webhookEvents.eventKey, key),
            isNull(webhookEvents.reactionsDoneAt),
          ),
        );
    },

    /** The event's reactions have run: no later delivery runs them again. */
    async reacted(provider: string, key: string): Promise<void> {
      await db
        .update(webhookEvents)
        .set({ reactionsDoneAt: clock.now() })
        .where(and(eq(webhookEvents.provider, provider), eq(webhookEvents.eventKey, key)));
    },
  };
}

export type WebhookEvents = ReturnType<typeof createWebhookEvents>;
