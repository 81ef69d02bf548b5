import { and, count, eq, gte, inArray, like } from "drizzle-orm";
import { stringify as toYaml } from "yaml";
import type { AgentIdentity } from "../agents/token-service.js";
import { canonicalJson } from "../audit/chain.js";
import { eventIdsOf, simulateHistory } from "../audit/history.js";
import type { Tx } from "../db/client.js";
import { accessRequests, auditEvents } from "../db/schema.js";
import { AppError } from "../errors.js";
import { callHash } from "../grants/one-shot.js";
import { sha256 } from "../hash.js";
import { newId } from "../ids.js";
import { enqueue } from "../outbox/outbox.js";
import { blastRadius, type GrantHistory, SEEN_SAMPLE } from "../policy/blast-radius.js";
import { withGrants } from "../policy/compile.js";
import { type GrantEntry, grantDefOf, grantProblem, proposeEffective } from "../policy/effective.js";
import { type CompiledProject, formatDuration, parseDuration } from "../policy/index.js";
import { classifyRisk } from "../policy/risk.js";
import { LIFTABLE_DENIALS, ONE_SHOT_DENIALS, type ScopedCall, scopeRequest } from "../policy/scope.js";
import { kindsIn, redactParams } from "../policy/sensitive.js";
import type { RiskTier } from "../policy/types.js";
import { grantRowsInEffect, renderCached, toEntry } from "../policy-store/policy-store.js";
import type { AccessRequestInput, ButlerDeps, SubmitResult } from "./context.js";
import { type AuditRow, pendingByKey, readDenialEvent, viewOne } from "./request-repo.js";
import { checkGrantCall, checkOneShotCall } from "./request-rules.js";
import type { RequestRow } from "./request-view.js";
import { expireInTx } from "./transitions.js";

type Filed = { status: "created" | "existing"; row: RequestRow };

/** Options of a request filed by the gateway in the call path. */
export interface SubmitOptions {
  /** For a one-shot request: the key the approved call is sent with. */
  idempotencyKey?: string | undefined;
}

/** Files an access request for the calling agent (or returns the identical pending one). */
export async function submit(
  deps: ButlerDeps,
  identity: AgentIdentity,
  input: AccessRequestInput,
  opts: SubmitOptions,
): Promise<SubmitResult> {
  const now = deps.clock.now();
  const project = deps.policies.index().projects.get(identity.project);
  if (!project) throw new AppError("FORBIDDEN", `project '${identity.project}' has no policy in force`);
  if (!project.agentRoles.has(identity.agent))
    throw new AppError("FORBIDDEN", `agent ${identity.agent} is not in project ${identity.project}`);
  const settings = project.document.settings;
  const ttl = parseDuration(input.ttl ?? settings.grantTtlDefaultSeconds);
  if (!ttl.ok) throw new AppError("INVALID_INPUT", `ttl: ${ttl.error}`);
  if (ttl.value > settings.grantTtlMaxSeconds)
    throw new AppError(
      "INVALID_INPUT",
      `ttl: ${formatDuration(ttl.value)} is longer than the maximum grant TTL of ${identity.project} (${formatDuration(settings.grantTtlMaxSeconds)}); ask for at most that`,
    );
  const event = input.denial_event_id
    ? await readDenialEvent(deps.db, identity, input.denial_event_id)
    : undefined;
  if (event && ONE_SHOT_DENIALS.has(String(event.details.deny_code ?? "")))
    return submitOneShot(deps, identity, project, event, input, ttl.value, opts);
  if (input.params !== undefined)
    throw new AppError(
      "INVALID_INPUT",
      "params: only a one-shot request (for a denial that said approval_required) names parameters; a grant covers an action on a resource",
    );
  const scoped = scopeRequest(
    {
      action: input.action,
      resource: input.resource,
      branch: input.branch,
      resourceGlob: input.resource_pattern,
    },
    event ? deniedCall(event) : undefined,
  );
  if (!scoped.ok) throw new AppError("INVALID_INPUT", scoped.error);
  const call = scoped.value;
  const checked = checkGrantCall(project, identity.agent, call, now);
  if (!checked.ok) throw new AppError(checked.code, checked.message);
  const decision = checked.decision;
  if (decision.decision !== "ALLOW")
    return fileGrantRequest(deps, identity, project, call, input, ttl.value, now);
  await deps.db.transaction((tx) =>
    deps.audit.appendInTx(tx, [
      {
        type: "access_request.already_allowed",
        agent: identity.agent,
        project: identity.project,
        action: call.action,
        resource: call.resource,
        reason: decision.reason,
        details: { grant_id: decision.grantId, denial_event_id: input.denial_event_id },
      },
    ]),
  );
  return {
    status: "already_allowed",
    grant_id: decision.grantId,
    revision: decision.revision,
    reason: decision.reason,
    action: call.action,
    resource: call.resource,
    branch: call.branch ?? null,
    expires_at: decision.expiresAt === undefined ? null : new Date(decision.expiresAt).toISOString(),
  };
}

/** The audited call the denial event describes, if it can be lifted by a grant. */
function deniedCall(e: AuditRow): ScopedCall {
  const code = String(e.details.deny_code ?? "");
  if (!LIFTABLE_DENIALS.has(code))
    throw new AppError(
      "PRECONDITION_FAILED",
      `denial_event_id: that denial (${e.reason}) cannot be lifted by an access request`,
    );
  return {
    action: e.action ?? "",
    resource: e.resource ?? "",
    branch: (e.details.branch as string | undefined) ?? undefined,
  };
}

/** A time-bound grant request: its proposal is the policy diff that approval would apply. */
async function fileGrantRequest(
  deps: ButlerDeps,
  identity: AgentIdentity,
  project: CompiledProject,
  call: ScopedCall,
  input: AccessRequestInput,
  ttlSeconds: number,
  now: Date,
): Promise<SubmitResult> {
  const settings = project.document.settings;
  const dedupeKey = sha256(
    JSON.stringify([
      identity.project,
      identity.agent,
      call.action,
      call.resource,
      call.branch ?? null,
      ...(call.resourceGlob === undefined ? [] : [call.resourceGlob]),
    ]),
  );
  const tier = classifyRisk(call.action, settings);
  const id = newId("req");
  const outcome = await deps.db.transaction(async (tx): Promise<Filed> => {
    const existing = await pendingTwin(deps, tx, dedupeKey, now);
    if (existing) return { status: "existing", row: existing };
    const proposed = {
      id,
      agent: identity.agent,
      ...call,
      expiresAt: now.getTime() + ttlSeconds * 1000,
      note: `access request ${id} by ${identity.agent} (proposed: expires ${formatDuration(ttlSeconds)} after approval)`,
    };
    // The grant must load as policy; refuse here, with the reason, rather than fail at approval.
    // Checked on its own: instances serve it from its row, never by parsing the whole text again.
    const problem = grantProblem(identity.project, proposed);
    if (problem)
      throw new AppError(
        "INVALID_INPUT",
        `this call cannot be written as a grant: ${problem.path}: ${problem.message}`,
      );
    const { latest, before, after, diff } = await proposalIn(deps, tx, identity.project, proposed, now);
    const proposalHash = sha256(diff);
    const radius = blastRadius({
      call,
      agent: identity.agent,
      ttlSeconds,
      operations: deps.operations ?? [],
      recent:
        call.resourceGlob === undefined
          ? undefined
          : {
              days: SEEN_DAYS,
              resources: await recentResources(tx, identity.project, call.action, call.resourceGlob, now),
            },
      history: await grantHistory(tx, project, identity.agent, proposed, now),
      approvedBefore: await approvedBefore(tx, dedupeKey),
    });
    return insertPending(
      deps,
      tx,
      {
        ...requestValues(identity, input, call, project, now),
        resourceGlob: call.resourceGlob ?? null,
        blastRadius: radius,
        id,
        denialEventId: input.denial_event_id ?? null,
        requestedTtlSeconds: ttlSeconds,
        proposalDiff: diff,
        proposalBaseRevision: latest.revision,
        proposalHash,
        dedupeKey,
      },
      call.resourceGlob === undefined ? {} : { resource_pattern: call.resourceGlob },
      {
        type: "policy.proposed",
        reason: `proposed grant ${id} for ${identity.agent}: ${call.action} on ${call.resourceGlob ?? (call.resource || "(no resource)")}`,
        details: {
          base_revision: latest.revision,
          proposal_hash: proposalHash,
          before_hash: sha256(before),
          after_hash: sha256(after),
        },
      },
    );
  });
  return filed(deps, outcome, tier);
}

/** How far back a glob's blast radius looks for other resources the project's calls named. */
const SEEN_DAYS = 30;

/**
 * The distinct resources of `action` in the project's audited calls of the last SEEN_DAYS days that
 * could match `glob` (those starting with its literal text), at most 10,000 of them.
 */
async function recentResources(
  tx: Tx,
  project: string,
  action: string,
  glob: string,
  now: Date,
): Promise<string[]> {
  const prefix = literalPrefix(glob).replace(/[\\%_]/g, (c) => `\\${c}`);
  const rows = await tx
    .selectDistinct({ resource: auditEvents.resource })
    .from(auditEvents)
    .where(
      and(
        eq(auditEvents.project, project),
        eq(auditEvents.action, action),
        inArray(auditEvents.type, ["gateway.allowed", "gateway.denied"]),
        gte(auditEvents.ts, new Date(now.getTime() - SEEN_DAYS * 86_400_000)),
        like(auditEvents.resource, `${prefix}%`),
      ),
    )
    .orderBy(auditEvents.resource)
    .limit(10_000);
  return rows.flatMap((r) => (r.resource ? [r.resource] : []));
}

/** The text every match of `glob` starts with (before its first wildcard), escapes undone. */
function literalPrefix(glob: string): string {
  let out = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*" || c === "?") break;
    if (c === "\\" && i + 1 < glob.length) out += glob[++i];
    else out += c;
  }
  return out;
}

/**
 * What the proposed grant would have changed over the agent's audited calls of its action in the
 * last SEEN_DAYS days: the denials it would have turned into ALLOWs (decided again by the policy
 * in force with and without it), one example per distinct call, newest first.
 */
async function grantHistory(
  tx: Tx,
  project: CompiledProject,
  agent: string,
  proposed: GrantEntry,
  now: Date,
): Promise<GrantHistory> {
  const sim = await simulateHistory(tx, project, withGrants(project, [grantDefOf(proposed)]), {
    project: project.name,
    since: new Date(now.getTime() - SEEN_DAYS * 86_400_000),
    agent,
    action: proposed.action,
  });
  const byCall = new Map<
    string,
    { resource: string; code: string | null; count: number; lastSeq: number; lastTs: number }
  >();
  for (const g of sim.allowed) {
    const key = JSON.stringify([g.resource, g.branch ?? null]);
    const seen = byCall.get(key);
    if (seen) seen.count += g.count;
    else
      byCall.set(key, {
        resource: g.resource,
        code: g.code ?? null,
        count: g.count,
        lastSeq: g.lastSeq,
        lastTs: g.lastTs,
      });
  }
  const examples = [...byCall.values()].slice(0, SEEN_SAMPLE);
  const ids = await eventIdsOf(
    tx,
    examples.map((e) => e.lastSeq),
  );
  return {
    days: SEEN_DAYS,
    allowed_calls: sim.allowedCalls,
    distinct: byCall.size,
    refusals_lifted: sim.refusalsLifted,
    undetermined: sim.undetermined,
    examples: examples.map((e) => ({
      event_id: ids.get(e.lastSeq) ?? "",
      resource: e.resource,
      code: e.code,
      count: e.count,
      at: new Date(e.lastTs).toISOString(),
    })),
  };
}

/** How many requests of exactly this scope (its dedupe key) people approved before. */
async function approvedBefore(tx: Tx, dedupeKey: string): Promise<number> {
  const [row] = await tx
    .select({ n: count() })
    .from(accessRequests)
    .where(and(eq(accessRequests.dedupeKey, dedupeKey), eq(accessRequests.status, "approved")));
  return Number(row?.n ?? 0);
}

/**
 * The policy in force (newest revision, read in `tx`) with `proposed` added: the effective texts
 * before and after and their diff, as a request's proposal shows it.
 */
export async function proposalIn(deps: ButlerDeps, tx: Tx, project: string, proposed: GrantEntry, now: Date) {
  const latest = await deps.policies.latestHeadIn(tx, project);
  if (!latest || latest.retired)
    throw new AppError("FORBIDDEN", `project '${project}' has no policy in force`);
  const entries = (await grantRowsInEffect(tx, project, now)).map(toEntry);
  const texts = proposeEffective(
    project,
    latest.baseline,
    entries,
    proposed,
    `revision ${latest.revision}`,
    `with ${proposed.id}`,
    renderCached,
  );
  return { latest, ...texts };
}

/** The columns both kinds of request fill the same way. */
function requestValues(
  identity: AgentIdentity,
  input: AccessRequestInput,
  call: ScopedCall,
  project: CompiledProject,
  now: Date,
) {
  const settings = project.document.settings;
  const tier = classifyRisk(call.action, settings);
  return {
    project: identity.project,
    agent: identity.agent,
    tokenId: identity.tokenId,
    status: "pending" as const,
    action: call.action,
    resource: call.resource,
    branch: call.branch ?? null,
    reason: input.reason,
    riskTier: tier,
    approvalsRequired: settings.approvals[tier],
    createdAt: now,
    expiresAt: new Date(now.getTime() + settings.pendingTtlSeconds * 1000),
  };
}

/**
 * A one-shot request: a person approves exactly the call that was denied with
 * approval_required, once. It is bound to the call's hash (action, resource, branch and the
 * canonical parameters), so the approval cannot be used for any other amount or receiver.
 */
async function submitOneShot(
  deps: ButlerDeps,
  identity: AgentIdentity,
  project: CompiledProject,
  event: AuditRow,
  input: AccessRequestInput,
  ttlSeconds: number,
  opts: SubmitOptions,
): Promise<SubmitResult> {
  const now = deps.clock.now();
  const call = {
    action: event.action ?? "",
    resource: event.resource ?? "",
    branch: (event.details.branch as string | undefined) ?? undefined,
    params: input.params ?? {},
  };
  if (input.resource_pattern !== undefined)
    throw new AppError(
      "INVALID_INPUT",
      "resource_pattern: a one-shot approval covers exactly the denied call; leave resource_pattern out",
    );
  for (const k of ["action", "resource", "branch"] as const) {
    if (input[k] !== undefined && input[k] !== call[k])
      throw new AppError(
        "INVALID_INPUT",
        `${k}: a one-shot request is for the denied call exactly (${k} ${call[k] ?? "none"}); leave ${k} out`,
      );
  }
  const hash = callHash(call);
  if (hash !== event.details.call_sha256)
    throw new AppError(
      "INVALID_INPUT",
      "params: these are not the parameters of the denied call; a one-shot approval covers exactly the call that was denied, so send its params unchanged",
    );
  const settings = project.document.settings;
  const checked = checkOneShotCall(project, identity.agent, call, now);
  if (!checked.ok) throw new AppError(checked.code, checked.message);
  const provider = event.details.provider as string | undefined;
  const operation = provider ? `${provider} ${String(event.details.operation ?? "")}`.trim() : null;
  // What the project's data_protection redacts is never shown to people (nor kept in the proposal).
  const shownParams = redactParams(call.params, kindsIn(project.document.dataProtection, "redact"));
  const redacted = canonicalJson(shownParams) !== canonicalJson(call.params);
  const proposal = oneShotProposal(identity.agent, { ...call, params: shownParams }, operation, event.reason);
  const dedupeKey = sha256(JSON.stringify([identity.project, identity.agent, "one_shot", hash]));
  const tier = classifyRisk(call.action, settings);
  const outcome = await deps.db.transaction(async (tx): Promise<Filed> => {
    const existing = await pendingTwin(deps, tx, dedupeKey, now);
    if (existing) return { status: "existing", row: existing };
    const proposalHash = sha256(proposal);
    return insertPending(
      deps,
      tx,
      {
        ...requestValues(identity, input, call, project, now),
        id: newId("req"),
        kind: "one_shot",
        denialEventId: event.eventId,
        requestedTtlSeconds: ttlSeconds,
        proposalDiff: proposal,
        proposalBaseRevision: project.revision,
        proposalHash,
        dedupeKey,
        callHash: hash,
        callParams: call.params,
        callParamsShown: redacted ? shownParams : null,
        callOperation: operation,
        // The call in the path is sent with this key after approval, however often the agent retries.
        idempotencyKey: opts.idempotencyKey ?? (provider ? `butler-${event.eventId}` : null),
      },
      { kind: "one_shot", call_sha256: hash },
      {
        type: "one_shot.proposed",
        reason: `proposed: allow exactly this call once for ${identity.agent}${operation ? ` (${operation})` : ""}`,
        details: { call_sha256: hash, proposal_hash: proposalHash },
      },
    );
  });
  return filed(deps, outcome, tier);
}

/** What an approver reads for a one-shot request: the exact call, as YAML, under a comment. */
function oneShotProposal(
  agent: string,
  call: ScopedCall & { params: Record<string, unknown> },
  operation: string | null,
  denialReason: string | null,
): string {
  return [
    "# One call, once: not a policy change. After approval the agent may make exactly this call",
    // The denial's reason carries agent-written values: one line, so it cannot add YAML lines.
    `# one time, until the approval's TTL runs out. (${(denialReason ?? "require_approval").replace(/[\p{Cc}\u2028\u2029]+/gu, " ")})`,
    toYaml(
      {
        agent,
        action: call.action,
        resource: call.resource,
        ...(call.branch !== undefined ? { branch: call.branch } : {}),
        ...(operation ? { operation } : {}),
        params: call.params,
      },
      { lineWidth: 0 },
    ).trimEnd(),
  ].join("\n");
}

/** The identical request still pending, if any (one past its deadline is expired on the way). */
async function pendingTwin(
  deps: ButlerDeps,
  tx: Tx,
  dedupeKey: string,
  now: Date,
): Promise<RequestRow | undefined> {
  const existing = await pendingByKey(tx, dedupeKey);
  if (existing && existing.expiresAt > now) return existing;
  if (existing) await expireInTx(deps, tx, existing, now);
  return undefined;
}

/**
 * Writes a new pending request with its two audit lines (filed, then the proposal) and the cards
 * to post, in the caller's transaction; an identical request filed at the same moment wins.
 */
async function insertPending(
  deps: ButlerDeps,
  tx: Tx,
  values: typeof accessRequests.$inferInsert,
  filedDetails: Record<string, unknown>,
  proposal: { type: string; reason: string; details: Record<string, unknown> },
): Promise<Filed> {
  const [row] = await tx.insert(accessRequests).values(values).onConflictDoNothing().returning();
  if (!row) {
    // The identical request that was filed while this one was: the one to return.
    const other = await pendingByKey(tx, values.dedupeKey);
    if (!other)
      throw new AppError("UNAVAILABLE", "an identical request was being filed at the same moment; try again");
    return { status: "existing", row: other };
  }
  const common = { agent: row.agent, project: row.project, action: row.action, resource: row.resource };
  const [filedLine] = await deps.audit.appendInTx(tx, [
    {
      type: "access_request.filed",
      ...common,
      reason: row.reason,
      details: {
        request_id: row.id,
        branch: row.branch ?? undefined,
        denial_event_id: row.denialEventId ?? undefined,
        ttl: formatDuration(row.requestedTtlSeconds),
        risk_tier: row.riskTier,
        approvals_required: row.approvalsRequired,
        proposal_hash: row.proposalHash,
        // The agent's words as filed (the line's reason may have secrets redacted): approvers
        // read them, so an edit in the database is caught like any other.
        reason_sha256: sha256(row.reason),
        ...filedDetails,
      },
    },
    { ...proposal, ...common, details: { request_id: row.id, ...proposal.details } },
  ]);
  const [withEvent] = await tx
    .update(accessRequests)
    .set({ filedEventId: filedLine!.event_id })
    .where(eq(accessRequests.id, row.id))
    .returning();
  // A card for the new request on every approval surface, after commit.
  await enqueue(
    tx,
    deps.channels.map((channel) => ({
      topic: "card.post" as const,
      key: `${row.id}:card:${channel}`,
      payload: { requestId: row.id, channel },
    })),
    values.createdAt ?? deps.clock.now(),
  );
  return { status: "created", row: withEvent! };
}

async function filed(deps: ButlerDeps, outcome: Filed, tier: RiskTier): Promise<SubmitResult> {
  if (outcome.status === "created") {
    deps.log.info(
      { requestId: outcome.row.id, agent: outcome.row.agent, tier, kind: outcome.row.kind },
      "access request filed",
    );
    deps.onEnqueued?.();
  }
  return { status: outcome.status, request: (await viewOne(deps.db, outcome.row)).view };
}
