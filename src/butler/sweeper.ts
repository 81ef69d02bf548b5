import { and, eq, inArray, isNull, lte, sql } from "drizzle-orm";
import type { AuditEventInput } from "../audit/audit-log.js";
import { rowsOf, type Tx } from "../db/client.js";
import { accessRequests, grants } from "../db/schema.js";
import { enqueue, type OutboxMessage } from "../outbox/outbox.js";
import { reminderStep } from "../policy/reminders.js";
import type { ReminderSchedule } from "../policy/types.js";
import type { ButlerDeps } from "./context.js";
import type { RequestRow } from "./request-view.js";
import { announce, expireInTx, notification } from "./transitions.js";

export interface SweepResult {
  expiredRequests: number;
  expiredGrants: number;
  reminded: number;
}

/**
 * Housekeeping, safe to run on every instance (one at a time wins an advisory lock): expires
 * pending requests past their deadline, reminds approvers of requests waiting too long, and
 * records expired grants (a new revision, the agent told). Grants stop allowing at their expiry on
 * their own; this only records it.
 */
export async function sweep(deps: ButlerDeps): Promise<SweepResult> {
  const now = deps.clock.now();
  const swept = await deps.db.transaction(async (tx) => {
    const [lock] = rowsOf<{ ok: boolean }>(
      await tx.execute(sql`SELECT pg_try_advisory_xact_lock(hashtext('butler.sweep')) AS ok`),
    );
    if (!lock?.ok) return undefined;
    const expiredRequests = await expireRequests(deps, tx, now);
    const reminded = deps.channels.length > 0 ? await remind(deps, tx, now) : 0;
    return { expiredRequests, reminded };
  });
  // Grant expiries after that commits, each project in its own transaction that takes the
  // project's lock before appending to the audit log, as approvals and revocations do: holding the
  // audit log's head while waiting for a project's lock could deadlock with them.
  const grantsSwept = swept ? await recordGrantExpiries(deps, now) : { expiredGrants: 0, projects: [] };
  const counts = { expiredRequests: 0, reminded: 0, ...swept, ...grantsSwept };
  if (counts.expiredRequests + counts.expiredGrants + counts.reminded > 0) deps.onEnqueued?.();
  for (const project of counts.projects) await deps.policies.refreshProject(project);
  return {
    expiredRequests: counts.expiredRequests,
    expiredGrants: counts.expiredGrants,
    reminded: counts.reminded,
  };
}

/** Pending requests past their deadline become expired. */
async function expireRequests(deps: ButlerDeps, tx: Tx, now: Date): Promise<number> {
  const due = await tx
    .select()
    .from(accessRequests)
    .where(and(eq(accessRequests.status, "pending"), lte(accessRequests.expiresAt, now)))
    .limit(500)
    .for("update", { skipLocked: true });
  for (const r of due) await expireInTx(deps, tx, r, now);
  return due.length;
}

/**
 * Pending requests whose reminder (settings.reminders) is due get it on their cards; one whose
 * escalation is due is also posted to the escalation group. Each is audited. A request decided
 * meanwhile, or reminded by another instance, is left alone (the update is conditional).
 */
async function remind(deps: ButlerDeps, tx: Tx, now: Date): Promise<number> {
  // Only the projects that remind are read (most have no reminders): no scan every 5 s for nothing.
  const reminding = [...deps.policies.index().projects.values()]
    .filter((p) => p.document.settings.reminders !== undefined)
    .map((p) => p.name);
  if (reminding.length === 0) return 0;
  const waiting = await tx
    .select({
      id: accessRequests.id,
      project: accessRequests.project,
      createdAt: accessRequests.createdAt,
      remindersSent: accessRequests.remindersSent,
      escalatedAt: accessRequests.escalatedAt,
    })
    .from(accessRequests)
    .where(and(eq(accessRequests.status, "pending"), inArray(accessRequests.project, reminding)));
  let reminded = 0;
  for (const w of waiting) {
    const schedule = deps.policies.index().projects.get(w.project)?.document.settings.reminders;
    if (schedule === undefined) continue;
    const step = reminderStep(
      schedule,
      w.createdAt.getTime(),
      w.remindersSent,
      w.escalatedAt !== null,
      now.getTime(),
    );
    if (step.reminder === undefined && !step.escalate) continue;
    // Locked only if no one holds it (an approval in progress): waiting here, after this sweep
    // has appended audit lines, could deadlock with that approval's own append.
    const [free] = await tx
      .select({ id: accessRequests.id })
      .from(accessRequests)
      .where(eq(accessRequests.id, w.id))
      .for("update", { skipLocked: true });
    if (!free) continue;
    const [r] = await tx
      .update(accessRequests)
      .set({
        ...(step.reminder === undefined ? {} : { remindedAt: now, remindersSent: step.reminder }),
        ...(step.escalate ? { escalatedAt: now } : {}),
      })
      .where(
        and(
          eq(accessRequests.id, w.id),
          eq(accessRequests.status, "pending"),
          eq(accessRequests.remindersSent, w.remindersSent),
          w.escalatedAt === null ? isNull(accessRequests.escalatedAt) : sql`true`,
        ),
      )
      .returning();
    if (!r) continue;
    const escalate = step.escalate ? schedule.escalate : undefined;
    await deps.audit.appendInTx(tx, [
      ...(step.reminder === undefined
        ? []
        : [reminderEvent(r, "access_request.reminded", { reminder: step.reminder })]),
      ...(escalate === undefined
        ? []
        : [
            reminderEvent(r, "access_request.escalated", {
              approvers: escalate.approvers,
              slack: escalate.slack,
              telegram: escalate.telegram,
            }),
          ]),
    ]);
    const notes = [
      ...(escalate === undefined ? [] : [`Escalated to ${escalationTargets(escalate)}: nobody decided yet`]),
      ...(step.reminder === undefined ? [] : [`Reminder ${step.reminder}: still waiting for a decision`]),
    ];
    const note = `${notes.join("; ")}; the request expires ${r.expiresAt.toISOString()}`;
    await announce(deps, tx, r, undefined, note, now);
    if (escalate !== undefined) await enqueue(tx, escalationPosts(deps, r), now);
    reminded++;
  }
  return reminded;
}

function reminderEvent(
  r: RequestRow,
  type: "access_request.reminded" | "access_request.escalated",
  details: Record<string, unknown>,
): AuditEventInput {
  const reason =
    type === "access_request.reminded"
      ? `still pending; reminder ${details.reminder}`
      : "still pending; put before the escalation group";
  return {
    type,
    agent: r.agent,
    project: r.project,
    action: r.action,
    resource: r.resource,
    reason,
    details: { request_id: r.id, ...details },
  };
}

/** "carol, dave and Slack C0ESCALATE", for the note on every card. */
function escalationTargets(e: NonNullable<ReminderSchedule["escalate"]>): string {
  const parts = [
    ...e.approvers,
    ...(e.slack ?? []).map((c) => `Slack ${c}`),
    ...(e.telegram ?? []).map((c) => `Telegram ${c}`),
  ];
  return parts.length > 1 ? `${parts.slice(0, -1).join(", ")} and ${parts.at(-1)}` : (parts[0] ?? "");
}

/** The escalated card, posted on each chat platform to the escalation group. */
function escalationPosts(deps: ButlerDeps, r: RequestRow): OutboxMessage[] {
  return deps.channels
    .filter((channel) => channel !== "dashboard")
    .map((channel) => ({
      topic: "card.post",
      key: `${r.id}:card:${channel}`,
      payload: { requestId: r.id, channel, audience: "escalation" },
    }));
}

/** Grants past their expiry, not revoked, whose expiry is not recorded yet. */
const expiryUnrecorded = (now: Date) =>
  and(isNull(grants.revokedAt), isNull(grants.expiryRecordedAt), lte(grants.expiresAt, now));

/** Grants past their expiry are recorded as expired, one transaction per project. */
async function recordGrantExpiries(
  deps: ButlerDeps,
  now: Date,
): Promise<{ expiredGrants: number; projects: string[] }> {
  const candidates = await deps.db
    .select({ project: grants.project })
    .from(grants)
    .where(expiryUnrecorded(now))
    .limit(500);
  let expiredGrants = 0;
  const projects: string[] = [];
  for (const project of new Set(candidates.map((c) => c.project))) {
    try {
      // One project whose policy cannot be recomposed must not stop the others' expiries being
      // recorded; grants another instance is recording are skipped (SKIP LOCKED).
      expiredGrants += await deps.db.transaction((tx) => recordProjectExpiries(deps, tx, project, now));
      projects.push(project);
    } catch (e) {
      deps.log.error({ err: e, project }, "recording grant expiries failed for this project");
    }
  }
  return { expiredGrants, projects };
}

async function recordProjectExpiries(deps: ButlerDeps, sp: Tx, project: string, now: Date): Promise<number> {
  await deps.policies.lockProject(sp, project);
  const list = await sp
    .select()
    .from(grants)
    .where(and(eq(grants.project, project), expiryUnrecorded(now)))
    .for("update", { skipLocked: true });
  if (list.length === 0) return 0;
  const ids = list.map((g) => g.id);
  await sp.update(grants).set({ expiryRecordedAt: now }).where(inArray(grants.id, ids));
  // A retired project has no policy to recompose; its grants stopped allowing anyway.
  const latest = await deps.policies.latestHeadIn(sp, project);
  const revision =
    latest && !latest.retired
      ? (await deps.policies.recompose(sp, project, `expiry:${ids.join(",")}`)).revision
      : undefined;
  const events: AuditEventInput[] = list.map((g) => ({
    type: "grant.expired",
    agent: g.agent,
    project: g.project,
    action: g.action,
    resource: g.resource,
    reason: `grant ${g.id} expired at ${g.expiresAt.toISOString()}`,
    details: { grant_id: g.id, revision },
  }));
  await deps.audit.appendInTx(sp, events);
  const requests = await sp.select().from(accessRequests).where(inArray(accessRequests.id, ids));
  for (const r of requests) {
    const g = list.find((x) => x.id === r.id)!;
    const expiresAt = g.expiresAt.toISOString();
    const told = notification(r, "grant_expired", { grantId: g.id, expiresAt, revision });
    await announce(deps, sp, r, told, `The grant expired at ${expiresAt}`, now);
  }
  return list.length;
}
