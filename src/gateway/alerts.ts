import { inArray } from "drizzle-orm";
import type { AuditLog } from "../audit/audit-log.js";
import type { Clock } from "../clock.js";
import type { Db, Tx } from "../db/client.js";
import { chatBindings, securityAlerts } from "../db/schema.js";
import { newId } from "../ids.js";
import { enqueue, type OutboxMessage } from "../outbox/outbox.js";
import type { Drift } from "../policy/drift.js";
import type { AlertKind, PolicyDocument, PolicyIndex } from "../policy/index.js";

/**
 * Security alerts: a project's `security:` section names a security room in Slack and Telegram
 * and an outgoing webhook; an alert (an agent's drift turning major, a provider's event breaking
 * its pact, its trust falling below a rule, a reaction run) is one `security.alert` line and one
 * outbox message per destination in one transaction: for a drift level change or a trust
 * incident, theirs (sent if and only if that is stored); for a provider event, right after it.
 */
export interface SecurityAlert {
  id: string;
  kind: AlertKind;
  project: string;
  agent: string;
  /** One line: what happened. */
  title: string;
  /** The evidence, one fact per line (numbers, codes, what the policy did). */
  facts: string[];
  /** The audit events behind it. */
  eventIds: string[];
  at: string;
  /** The agent's page in the dashboard. */
  url: string;
}

/** Where one message of an alert goes. */
export type AlertDelivery =
  | { channel: "slack" | "telegram"; target: string; alert: SecurityAlert }
  | { channel: "webhook"; url: string; secret: string | undefined; alert: SecurityAlert };

declare module "../outbox/outbox.js" {
  interface OutboxTopics {
    /** Send one security alert to one destination (a platform's rooms, or the outgoing webhook). */
    "security.alert": AlertDelivery;
  }
}

export function createAlerts(deps: {
  db: Db;
  audit: Pick<AuditLog, "appendInTx">;
  clock: Clock;
  policies: { index(): PolicyIndex };
  publicUrl: () => string;
  /** Called after an alert's transaction committed (wakes the outbox). */
  onEnqueued?: (() => void) | undefined;
}) {
  const { db, audit, clock, policies } = deps;

  /** Writes the alert in `tx` when the project sends alerts of this kind; the alert, or undefined. */
  async function raiseInTx(
    tx: Tx,
    input: Omit<SecurityAlert, "id" | "at" | "url"> & { requestId?: string | undefined },
  ): Promise<SecurityAlert | undefined> {
    const doc = policies.index().projects.get(input.project)?.document;
    const security = doc?.security;
    // A break-glass is always loud: the security rooms and the approvers' rooms too.
    const loud = input.kind === "break_glass";
    if (!loud && !security?.alertOn.has(input.kind)) return undefined;
    const now = clock.now();
    const alert: SecurityAlert = {
      ...input,
      id: newId("al"),
      at: now.toISOString(),
      url: `${deps.publicUrl()}/dashboard/agents/${encodeURIComponent(input.project)}/${encodeURIComponent(input.agent)}`,
    };
    // One message per room: a room that fails is retried alone.
    // Accounts approvers linked themselves (`approvers link`) count as theirs too.
    const bound =
      loud && doc && doc.approvers.length > 0
        ? await tx
            .select()
            .from(chatBindings)
            .where(
              inArray(
                chatBindings.approver,
                doc.approvers.map((a) => a.id),
              ),
            )
        : [];
    const rooms = (channel: "slack" | "telegram") => [
      ...new Set([
        ...(security?.[channel] ?? []),
        ...(loud && doc ? approverRooms(doc, channel, bound) : []),
      ]),
    ];
    const deliveries: AlertDelivery[] = [
      ...rooms("slack").map((target) => ({ channel: "slack" as const, target, alert })),
      ...rooms("telegram").map((target) => ({ channel: "telegram" as const, target, alert })),
      ...(security?.webhookUrl
        ? [{ channel: "webhook" as const, url: security.webhookUrl, secret: security.webhookSecret, alert }]
        : []),
    ];
    await tx.insert(securityAlerts).values({
      id: alert.id,
      project: alert.project,
      agent: alert.agent,
      kind: alert.kind,
      title: alert.title.slice(0, 500),
      createdAt: now,
      requestId: input.requestId ?? null,
    });
    await audit.appendInTx(tx, [
      {
        type: "security.alert",
        at: now,
        agent: input.agent,
        project: input.project,
        reason: input.title,
        details: {
          alert_id: alert.id,
          kind: input.kind,
          facts: input.facts,
          event_ids: input.eventIds,
          destinations: deliveries.map((d) =>
            d.channel === "webhook" ? "webhook" : `${d.channel}:${d.target}`,
          ),
        },
      },
    ]);
    const messages: OutboxMessage[] = deliveries.map((payload) => ({
      topic: "security.alert",
      key: `alert:${input.project}:${payload.channel === "webhook" ? "webhook" : `${payload.channel}:${payload.target}`}`,
      payload,
    }));
    await enqueue(tx, messages, now);
    return alert;
  }

  return {
    raiseInTx,
    /** Raises the alert in a transaction of its own. */
    async raise(input: Omit<SecurityAlert, "id" | "at" | "url">): Promise<SecurityAlert | undefined> {
      const alert = await db.transaction((tx) => raiseInTx(tx, input));
      if (alert) deps.onEnqueued?.();
      return alert;
    },
  };
}

export type Alerts = ReturnType<typeof createAlerts>;

/**
 * Where a project's approval cards go on a platform: its rooms, else each approver's own accounts
 * (named in the policy, or linked). Slack accounts known only by email are not reached here.
 */
function approverRooms(
  doc: PolicyDocument,
  channel: "slack" | "telegram",
  bound: readonly { channel: string; userId: string }[],
): string[] {
  const rooms = doc.settings.channels[channel];
  if (rooms) return rooms;
  const named = doc.approvers.flatMap((a) => {
    const id = channel === "slack" ? a.slack?.userId : a.telegram?.userId;
    return id ? [id] : [];
  });
  return [...named, ...bound.filter((b) => b.channel === channel).map((b) => b.userId)];
}

/** The alert of an agent's drift level changing (merchant categories: the event's own alert says it). */
export async function driftAlert(
  alerts: Pick<Alerts, "raiseInTx">,
  tx: Tx,
  c: { project: string; agent: string; dimension: string; drift: Drift; eventId: string },
): Promise<void> {
  if (c.dimension === "merchant_category" || c.drift.level === "none") return;
  const d = c.drift;
  await alerts.raiseInTx(tx, {
    kind: d.level === "major" ? "drift_major" : "drift_minor",
    project: c.project,
    agent: c.agent,
    title: `${c.agent}: ${d.level} drift in its use of ${c.dimension === "tool" ? "tools" : "operation groups"}`,
    facts: [
      `Jaccard distance ${d.jaccard}, Jensen-Shannon divergence ${d.jensenShannon}`,
      `${d.baselineCalls} calls in the baseline, ${d.recentCalls} recent`,
      ...d.shifts
        .slice(0, 3)
        .map((x) => `${x.value}: ${Math.round(x.baseline * 100)}% then, ${Math.round(x.recent * 100)}% now`),
    ],
    eventIds: [c.eventId],
  });
}

/** The alert of an incident taking an agent's trust score below a trust rule's line. */
export async function trustAlert(
  alerts: Pick<Alerts, "raiseInTx">,
  policies: { index(): PolicyIndex },
  tx: Tx,
  c: { project: string; agent: string; before: number; after: number; cause: string; eventId: string },
): Promise<void> {
  const rules = policies.index().projects.get(c.project)?.document.trust?.rules ?? [];
  const crossed = rules.filter(
    (r) =>
      r.below !== undefined &&
      // A rule that also asks for drift may not apply at all: the score alone says nothing.
      r.drift === undefined &&
      c.before >= r.below &&
      c.after < r.below &&
      (!r.agents || r.agents.includes(c.agent)),
  );
  if (crossed.length === 0) return;
  await alerts.raiseInTx(tx, {
    kind: "trust_low",
    project: c.project,
    agent: c.agent,
    title: `${c.agent}: trust score ${c.after}, below ${crossed.map((r) => `rule ${r.id} (${r.below})`).join(", ")}`,
    facts: [
      `was ${c.before}, lowered by ${c.cause}`,
      ...crossed.map((r) => `rule ${r.id} now limits ${r.actions.join(", ")}`),
    ],
    eventIds: [c.eventId],
  });
}
