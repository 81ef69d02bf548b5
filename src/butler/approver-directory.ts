import { randomBytes } from "node:crypto";
import { and, eq } from "drizzle-orm";
import type { Db } from "../db/client.js";
import { chatBindings, linkCodes } from "../db/schema.js";
import { AppError } from "../errors.js";
import { sha256 } from "../hash.js";
import type { CompiledProject, PolicyIndex } from "../policy/compile.js";
import { entryNamesAccount, identityOf, peopleOf, resolveChatAccount } from "../policy/people.js";
import type { ApproverDef } from "../policy/types.js";
import type { ApprovalCard } from "./approval-card.js";
import type { Audience, ChannelKind, ReviewInput } from "./channel-port.js";
import type { ButlerDeps } from "./context.js";

/**
 * Who is who: an approver id, the chat accounts that speak for them, and the projects they decide.
 * The one place in the Butler that knows Slack and Telegram accounts apart: the rest of the
 * workflow sees approver ids only. A chat account resolves to exactly one person or to nobody
 * (see policy/people.ts); ambiguity refuses.
 */

/**
 * The project's entry for this person, unless the policies disagree on who the person is (then
 * they decide nothing anywhere until the files agree: see policy/people.ts).
 */
export function approverOf(
  index: PolicyIndex,
  project: CompiledProject,
  approver: string,
): ApproverDef | undefined {
  if (isConflicted(index, approver)) return undefined;
  return project.document.approvers.find((a) => a.id === approver);
}

/** Whether the policy files define this person differently. */
export function isConflicted(index: PolicyIndex, approver: string): boolean {
  return peopleOf(index).conflicted.has(approver);
}

/** The projects where `approver` is an approver. */
export function projectsOfApprover(index: PolicyIndex, approver: string): string[] {
  return [...index.projects.values()].filter((p) => approverOf(index, p, approver)).map((p) => p.name);
}

/**
 * Whether `approver` may decide this request now (what the dashboard shows buttons for; the
 * review checks it again under the request's lock).
 */
export function mayDecide(
  index: PolicyIndex,
  approver: string,
  c: Pick<ApprovalCard, "project" | "riskTier" | "agent">,
): boolean {
  const project = index.projects.get(c.project);
  const who = project && approverOf(index, project, approver);
  return approver !== c.agent && (who?.tiers.includes(c.riskTier) ?? false);
}

/** Who gets a project's cards on one platform (see Audience in channels/channel.ts). */
export async function audienceFor(
  db: Db,
  index: PolicyIndex,
  project: string,
  channel: ChannelKind,
  /** `escalation`: the group a request escalates to (settings.reminders.escalate), not the first card's. */
  group?: "escalation",
): Promise<Audience> {
  const doc = index.projects.get(project)?.document;
  if (!doc) return { routes: undefined, approvers: [] };
  const escalate = doc.settings.reminders?.escalate;
  if (group === "escalation" && escalate === undefined) return { routes: undefined, approvers: [] };
  const rooms =
    group === "escalation" ? (escalate ?? { slack: undefined, telegram: undefined }) : doc.settings.channels;
  const routes = channel === "slack" ? rooms.slack : channel === "telegram" ? rooms.telegram : undefined;
  // The escalation group gets the card only once the request escalates; nobody else gets it then.
  const inGroup = (id: string) => escalate?.approvers.includes(id) ?? false;
  const bindings = await db.select().from(chatBindings).where(eq(chatBindings.channel, channel));
  const people = peopleOf(index);
  // Cards go to the accounts this project's own entry names and to accounts the person linked
  // themselves; never to an account another person also claims.
  const mine = (id: string, key: string) => [...(people.accounts.get(key) ?? [id])].every((x) => x === id);
  return {
    routes,
    approvers: doc.approvers
      .filter((a) => !people.conflicted.has(a.id) && inGroup(a.id) === (group === "escalation"))
      .map((a) => {
        const identity = identityOf(a);
        const own =
          channel === "slack"
            ? identity.slackUserId
            : channel === "telegram"
              ? identity.telegramUserId
              : a.id;
        const bound = bindings.filter((b) => b.approver === a.id).map((b) => b.userId);
        return {
          id: a.id,
          userIds: [...new Set([...(own ? [own] : []), ...bound])].filter((u) =>
            mine(a.id, `${channel}:${u}`),
          ),
          emails:
            channel === "slack" && identity.slackEmail && mine(a.id, `slack-email:${identity.slackEmail}`)
              ? [identity.slackEmail]
              : [],
        };
      }),
  };
}

/** Who pressed a button: an approver id, or why the account speaks for nobody here. */
export type Presser =
  | { kind: "person"; id: string }
  | {
      kind: "refused";
      /** For the audit line. */
      reason: string;
      details: Record<string, unknown>;
      /** For the person who pressed. */
      message: string;
    };

/**
 * Resolves the account that pressed a button on a card of `project` to an approver. On the
 * dashboard the signed-in person's id is the account. A chat account is exactly one person (across
 * every project) or nobody, and it speaks for that person in this project only if this project's
 * own entry for the person names it (or an operator's link bound it): no project's file can give
 * accounts to another project's approver.
 */
export async function resolvePresser(
  db: Db,
  index: PolicyIndex,
  project: string,
  /** A review of a request, or an action on a security alert. */
  input: Pick<ReviewInput, "actor"> & { requestId?: string; verdict?: string; alertId?: string },
): Promise<Presser> {
  const { actor } = input;
  if (actor.channel !== "slack" && actor.channel !== "telegram") return { kind: "person", id: actor.userId };
  const [bound] = await db
    .select({ approver: chatBindings.approver })
    .from(chatBindings)
    .where(and(eq(chatBindings.channel, actor.channel), eq(chatBindings.userId, actor.userId)));
  const found = resolveChatAccount(
    peopleOf(index),
    { channel: actor.channel, userId: actor.userId, email: actor.email },
    bound?.approver,
  );
  const entry = index.projects
    .get(project)
    ?.document.approvers.find((a) => found.kind === "person" && a.id === found.id);
  // A linked account speaks for its person only where the person is an approver: every caller
  // (reviews, security alerts' buttons) gets a refusal, not a person of another project.
  if (found.kind === "person" && entry && (bound?.approver === found.id || entryNamesAccount(entry, actor)))
    return found;
  const account = `${actor.channel}:${actor.userId}`;
  const common = {
    ...(input.requestId !== undefined ? { request_id: input.requestId } : {}),
    ...(input.alertId !== undefined ? { alert_id: input.alertId } : {}),
    channel: actor.channel,
    ...(input.verdict !== undefined ? { verdict: input.verdict } : {}),
  };
  if (found.kind === "person")
    return {
      kind: "refused",
      reason: `${account} is ${found.id}'s only in another project's policy; ${project}'s does not name it`,
      // Who tried: the person when the account is someone's elsewhere, else the account.
      details: { ...common, approver: found.id, account },
      message: `you are not an approver for ${project}`,
    };
  if (found.kind === "nobody")
    return {
      kind: "refused",
      reason: `${account} is not any approver's account`,
      details: { ...common, approver: account },
      message: `you are not an approver for ${project}`,
    };
  return {
    kind: "refused",
    reason: `${account} is claimed by more than one approver (${found.ids.join(", ")}) or by one the policy files disagree on`,
    details: { ...common, approver: account, candidates: found.ids },
    message: `Your ${actor.channel} account belongs to more than one approver in the policy files, so it decides nothing until an operator fixes them.`,
  };
}

/**
 * A one-time code that binds the chat account presenting it to `approver` (for Telegram, where
 * nobody knows their numeric id). Single use, valid for 15 minutes, audited both ways.
 */
export async function createLinkCode(
  deps: Pick<ButlerDeps, "db" | "audit" | "clock">,
  approver: string,
  channel: ChannelKind,
  actor: string,
): Promise<{ code: string; expiresAt: string }> {
  const code = randomBytes(18).toString("base64url");
  const now = deps.clock.now();
  const expiresAt = new Date(now.getTime() + 15 * 60_000);
  await deps.db.transaction(async (tx) => {
    await tx
      .insert(linkCodes)
      .values({ codeHash: sha256(code), approver, channel, createdAt: now, expiresAt });
    await deps.audit.appendInTx(tx, [
      {
        type: "approver.link_created",
        details: { approver, channel, actor, expires: expiresAt.toISOString() },
      },
    ]);
  });
  return { code, expiresAt: expiresAt.toISOString() };
}

const LINK_REFUSALS = {
  unknown: "This link is not valid (unknown or already used).",
  "already used": "This link is not valid (unknown or already used).",
  expired: "This link has expired; ask for a new one.",
  claimed:
    "This account belongs to another approver in the policy files, so it cannot be linked to a second one.",
} as const;

/** Redeems a link code for the chat account `userId`; returns the approver it is now bound to. */
export async function redeemLinkCode(
  deps: Pick<ButlerDeps, "db" | "audit" | "clock" | "policies">,
  code: string,
  channel: ChannelKind,
  userId: string,
): Promise<string> {
  const now = deps.clock.now();
  const outcome = await deps.db.transaction(async (tx) => {
    const [row] = await tx
      .select()
      .from(linkCodes)
      .where(eq(linkCodes.codeHash, sha256(code)))
      .for("update");
    const claimedBy = [...(peopleOf(deps.policies.index()).accounts.get(`${channel}:${userId}`) ?? [])];
    const problem: keyof typeof LINK_REFUSALS | undefined =
      !row || row.channel !== channel
        ? "unknown"
        : row.usedAt
          ? "already used"
          : row.expiresAt <= now
            ? "expired"
            : claimedBy.some((id) => id !== row.approver)
              ? "claimed"
              : undefined;
    if (problem || !row) return { problem: problem ?? ("unknown" as const), approver: undefined };
    await tx
      .update(linkCodes)
      .set({ usedAt: now, usedBy: userId })
      .where(eq(linkCodes.codeHash, row.codeHash));
    await tx
      .insert(chatBindings)
      .values({ channel, userId, approver: row.approver, createdAt: now })
      .onConflictDoUpdate({
        target: [chatBindings.channel, chatBindings.userId],
        set: { approver: row.approver, createdAt: now },
      });
    await deps.audit.appendInTx(tx, [
      { type: "approver.linked", details: { approver: row.approver, channel, user_id: userId } },
    ]);
    return { problem: undefined, approver: row.approver };
  });
  if (outcome.problem === undefined) return outcome.approver;
  // Recorded in its own transaction: the refusal is the event, nothing else changed.
  await deps.db.transaction((tx) =>
    deps.audit.appendInTx(tx, [
      {
        type: "approver.link_refused",
        reason: `link code ${outcome.problem}`,
        details: { channel, user_id: userId },
      },
    ]),
  );
  throw new AppError("FORBIDDEN", LINK_REFUSALS[outcome.problem]);
}
