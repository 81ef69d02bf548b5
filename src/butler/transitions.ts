import type { Tx } from "../db/client.js";
import { enqueue, type OutboxMessage } from "../outbox/outbox.js";
import type { ChannelKind } from "./channel-port.js";
import type { ButlerDeps } from "./context.js";
import type { AgentNotification } from "./notifier.js";
import { updateIfPending } from "./request-repo.js";
import type { RequestRow } from "./request-view.js";

/** What a card message names: the request, and the surface whose card it is. */
export interface CardMessage {
  requestId: string;
  channel: ChannelKind;
  /** For an update: what happened, in a sentence, shown with the refreshed card. */
  note?: string;
  /** For a post: `escalation` puts the card before the project's escalation group (settings.reminders). */
  audience?: "escalation";
}

declare module "../outbox/outbox.js" {
  interface OutboxTopics {
    /** Tell the agent (A2A tasks, the configured notifier) about its request. */
    "agent.notify": AgentNotification;
    /** Put a new request's card on one surface. */
    "card.post": CardMessage;
    /** Refresh every posted card of a request on one surface. */
    "card.update": CardMessage;
  }
}

/**
 * What every change of a request writes besides its row: the agent's notification and the cards'
 * refresh, as outbox messages in the same transaction.
 */

/** The outbox message that tells the agent about its request. */
export function notification(
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
  return { topic: "agent.notify", key: `${r.id}:agent`, payload: n };
}

/**
 * Outbox messages after a request changed: tell the agent (if `n`), and refresh the card on
 * every platform, each on its own queue (one platform failing never holds up another), with a
 * note saying what happened.
 */
function afterChange(
  deps: Pick<ButlerDeps, "notifyAgents" | "channels">,
  r: RequestRow,
  n: OutboxMessage | undefined,
  note: string,
): OutboxMessage[] {
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

/** Writes the change's outbox messages (see afterChange) in `tx`. */
export function announce(
  deps: Pick<ButlerDeps, "notifyAgents" | "channels">,
  tx: Tx,
  r: RequestRow,
  n: OutboxMessage | undefined,
  note: string,
  now: Date,
): Promise<void> {
  return enqueue(tx, afterChange(deps, r, n, note), now);
}

/** "already approved by jordan", for a request that is no longer pending. */
export function decidedMessage(r: RequestRow): string {
  const by = r.decidedBy ? ` by ${r.decidedBy}` : "";
  return `already ${r.status}${by}`;
}

/** Marks a pending request past its deadline as expired, with its audit event and outbox messages. */
export async function expireInTx(deps: ButlerDeps, tx: Tx, r: RequestRow, now: Date): Promise<RequestRow> {
  const updated = await updateIfPending(tx, r.id, { status: "expired", decidedAt: now });
  if (!updated) return r;
  await deps.audit.appendInTx(tx, [
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
  const note = `Expired: nobody decided before ${r.expiresAt.toISOString()}`;
  await announce(deps, tx, updated, notification(updated, "request_expired"), note, now);
  return updated;
}
