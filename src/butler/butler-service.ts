import { eq } from "drizzle-orm";
import type { AgentIdentity } from "../agents/token-service.js";
import type { Db, Tx } from "../db/client.js";
import { postedCards } from "../db/schema.js";
import { AppError } from "../errors.js";
import type { ApprovalCard } from "./approval-card.js";
import * as directory from "./approver-directory.js";
import { type BreakGlassInput, type BreakGlassResult, breakGlass, reviewBreakGlass } from "./break-glass.js";
import type { ChannelKind, ReviewInput, ReviewOutcome } from "./channel-port.js";
import type { AccessRequestInput, ButlerDeps, ListFilter, Reviewer, SubmitResult } from "./context.js";
import { type RememberResult, remember } from "./remember.js";
import {
  findRequest,
  grantProject,
  grantRows,
  listRows,
  requireRequest,
  viewOne,
  views,
} from "./request-repo.js";
import { pressAnswer } from "./request-state.js";
import { type AccessRequestView, cardOf, type GrantView, grantView, type Viewed } from "./request-view.js";
import { type ReviewOutcomeKind, review } from "./review.js";
import { cancel, revokeGrant } from "./revoke.js";
import { type SubmitOptions, submit } from "./submit.js";
import { sweep } from "./sweeper.js";

export type { AccessRequestInput, ButlerDeps, ListFilter, Reviewer, SubmitResult } from "./context.js";
export type { AccessRequestView, GrantView } from "./request-view.js";

/**
 * The Butler: turns a denied agent's request into a scoped proposal, lets approvers decide, and
 * applies, expires and revokes grants. Every state change commits together with its audit events
 * and with the outbox messages for what must happen afterwards (telling the agent, updating cards).
 *
 * This is the orchestration only; each use case is one transaction in its own module:
 * submit.ts (filing), review.ts (decisions, on the pure state machine of request-state.ts),
 * revoke.ts (cancel and revoke), sweeper.ts (expiry and reminders), approver-directory.ts (who is
 * who), request-repo.ts (reads, batched) and request-view.ts (what the API and cards show).
 * Every method is a plain function: any of them can be passed on as a callback.
 */
export function createButler(deps: ButlerDeps) {
  const { db, policies, clock } = deps;
  const index = () => policies.index();
  const card = (v: Viewed): ApprovalCard =>
    cardOf(v, {
      now: clock.now(),
      maxTtlSeconds: index().projects.get(v.row.project)?.document.settings.grantTtlMaxSeconds,
      publicUrl: deps.publicUrl(),
    });
  /** Approve and remember: `approver` asks to make an approved grant a rule of the file (see remember.ts). */
  const rememberAs = (approver: string, id: string): Promise<RememberResult> => {
    if (!deps.rememberPaths)
      throw new AppError("UNAVAILABLE", "this Butler has no policies directory to remember rules into");
    return remember(deps, deps.rememberPaths, approver, id);
  };
  const cardById = async (id: string): Promise<ApprovalCard> =>
    card(await viewOne(db, await requireRequest(db, id)));
  const rowsFor = (filter: ListFilter) =>
    listRows(
      db,
      filter,
      filter.approver === undefined ? undefined : directory.projectsOfApprover(index(), filter.approver),
    );
  const decide = async (
    reviewer: Reviewer,
    id: string,
    verdict: "approve" | "deny",
    opts: ReviewOpts = {},
  ) => {
    const done = await review(deps, reviewer, id, verdict, opts);
    const viewed = await viewOne(db, done.row);
    return { outcome: done.outcome, request: viewed.view, card: card(viewed) };
  };
  return {
    submit: (
      identity: AgentIdentity,
      input: AccessRequestInput,
      opts: SubmitOptions = {},
    ): Promise<SubmitResult> => submit(deps, identity, input, opts),

    /** A request, for the agent that filed it (anyone else's is "not found"). */
    async getForAgent(identity: AgentIdentity, id: string): Promise<AccessRequestView> {
      const r = await findRequest(db, id);
      if (!r || r.agent !== identity.agent || r.project !== identity.project)
        throw new AppError("NOT_FOUND", `no access request ${id}`);
      return (await viewOne(db, r)).view;
    },

    /** A request, for an approver of its project. */
    async getForApprover(approver: string, id: string): Promise<AccessRequestView> {
      const r = await findRequest(db, id);
      const p = r && index().projects.get(r.project);
      if (!r || !p || !directory.approverOf(index(), p, approver))
        throw new AppError("NOT_FOUND", `no access request ${id} in your projects`);
      return (await viewOne(db, r)).view;
    },

    /** Any request (operators through the admin API and CLI), read through `q` (a caller's transaction, for a consistent view). */
    get: async (id: string, q: Db | Tx = db): Promise<AccessRequestView> =>
      (await viewOne(q, await requireRequest(q, id))).view,

    /** Requests, newest first; for an approver only those of their projects. */
    list: async (filter: ListFilter): Promise<AccessRequestView[]> =>
      (await views(db, await rowsFor(filter))).map((x) => x.view),

    /** Requests with the card each approval surface renders, newest first (a bounded number of queries). */
    listCards: async (filter: ListFilter): Promise<{ view: AccessRequestView; card: ApprovalCard }[]> =>
      (await views(db, await rowsFor(filter))).map((x) => ({ view: x.view, card: card(x) })),

    /** An approver's verdict; returns the request and its card as they now are (see review.ts). */
    review: decide,

    /** Approve and remember: `approver` asks to make an approved grant a rule of the file (see remember.ts). */
    remember: rememberAs,

    /** A named person opens emergency access for an agent at once (see break-glass.ts). */
    breakGlass: (person: string, input: BreakGlassInput): Promise<BreakGlassResult> =>
      breakGlass(deps, person, input),
    /** A second person reviews a break-glass (acknowledges its alert). */
    reviewBreakGlass: (approver: string, id: string) => reviewBreakGlass(deps, approver, id),

    /** The agent withdraws its own pending request (see revoke.ts). */
    cancel: async (
      identity: AgentIdentity,
      id: string,
      opts: { unlessStillWanted?: (tx: Tx) => Promise<boolean> } = {},
    ): Promise<AccessRequestView> => (await viewOne(db, await cancel(deps, identity, id, opts))).view,

    /** Revokes a grant at once: a new policy revision without it, audited, the agent told. */
    revokeGrant: (grantId: string, actor: string, reason?: string, opts?: { incident?: boolean }) =>
      revokeGrant(deps, grantId, actor, reason, opts),

    /** Grants, newest first; active only unless `all`. */
    async listGrants(filter: {
      project?: string | undefined;
      all?: boolean;
      projects?: string[];
    }): Promise<GrantView[]> {
      const now = clock.now();
      return (await grantRows(db, filter, now)).map((g) => grantView(g, now));
    },

    /** The project a grant belongs to (to check who may revoke it). */
    grantProject: (grantId: string): Promise<string> => grantProject(db, grantId),

    /** Expiries and reminders (see sweeper.ts). */
    sweep: () => sweep(deps),

    /** The card every approval surface renders, from the current state. */
    card: async (id: string): Promise<ApprovalCard> => card(await viewOne(db, await requireRequest(db, id))),

    /** Whether `approver` may decide this request now (the review checks again under the lock). */
    mayDecide: (approver: string, c: Pick<ApprovalCard, "project" | "riskTier" | "agent">): boolean =>
      directory.mayDecide(index(), approver, c),

    /** The projects where `approver` is an approver. */
    projectsOfApprover: (approver: string): string[] => directory.projectsOfApprover(index(), approver),

    /** Who gets a project's cards on one platform (see Audience in channels/channel.ts). */
    audienceFor: (project: string, channel: ChannelKind, group?: "escalation") =>
      directory.audienceFor(db, index(), project, channel, group),

    /** A one-time code that binds a chat account to `approver` (see approver-directory.ts). */
    createLinkCode: (approver: string, channel: ChannelKind, actor: string) =>
      directory.createLinkCode(deps, approver, channel, actor),

    postedCardsOf: (id: string) => db.select().from(postedCards).where(eq(postedCards.requestId, id)),

    async recordPostedCards(
      id: string,
      cards: { channel: string; chatId: string; messageId: string }[],
    ): Promise<void> {
      if (cards.length === 0) return;
      await db
        .insert(postedCards)
        .values(cards.map((c) => ({ requestId: id, ...c, createdAt: clock.now() })))
        .onConflictDoNothing();
    },

    /** A button pressed on a card (see pressed below). */
    reviewFromChannel: (input: ReviewInput): Promise<ReviewOutcome> =>
      pressed(deps, decide, rememberAs, cardById, input),
  };
}

type ReviewOpts = { ttl?: string | number | undefined; reason?: string | undefined };

/**
 * A button pressed on a card. The account is resolved to an approver of the request's project
 * (approver-directory.ts); an unknown or ambiguous one is refused (and audited), never guessed.
 */
async function pressed(
  deps: ButlerDeps,
  decide: (
    reviewer: Reviewer,
    id: string,
    verdict: "approve" | "deny",
    opts: ReviewOpts,
  ) => Promise<{ outcome: ReviewOutcomeKind; request: AccessRequestView; card: ApprovalCard }>,
  remember: (approver: string, id: string) => Promise<RememberResult>,
  cardOf: (id: string) => Promise<ApprovalCard>,
  input: ReviewInput,
): Promise<ReviewOutcome> {
  const { db } = deps;
  try {
    const r = await findRequest(db, input.requestId);
    if (!r) return { ok: false, code: "NOT_FOUND", message: `no access request ${input.requestId}` };
    const presser = await directory.resolvePresser(db, deps.policies.index(), r.project, input);
    if (presser.kind === "refused") {
      await db.transaction((tx) =>
        deps.audit.appendInTx(tx, [
          {
            type: "access_request.review_refused",
            project: r.project,
            reason: presser.reason,
            details: presser.details,
          },
        ]),
      );
      return { ok: false, code: "FORBIDDEN", message: presser.message };
    }
    if (input.verdict === "remember") {
      const kept = await remember(presser.id, input.requestId);
      const card = await cardOf(input.requestId);
      return { ok: true, card, message: rememberAnswer(kept) };
    }
    const reviewer = { approver: presser.id, channel: input.actor.channel };
    const done = await decide(reviewer, input.requestId, input.verdict, {
      ttl: input.ttlSeconds,
      reason: input.reason,
    });
    return { ok: true, card: done.card, message: pressAnswer(done.outcome, done.request) };
  } catch (e) {
    if (e instanceof AppError) return { ok: false, code: e.code, message: e.message };
    throw e;
  }
}

/** What the presser of Remember is told. */
function rememberAnswer(r: RememberResult): string {
  if (r.status === "recorded")
    return `noted: ${r.remembered_by.length} of ${r.needed} approvers asked to make it a rule`;
  return r.written === "file"
    ? `made a permanent rule of ${r.path}${r.loaded === true ? "" : `; ${r.loaded}`}`
    : `written as a patch to ${r.path}: apply it to the policies directory`;
}

export type { ReviewOutcomeKind };

export type Butler = ReturnType<typeof createButler>;
