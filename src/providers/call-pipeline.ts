import type { AgentIdentity } from "../agents/token-service.js";
import type { AuditEventInput } from "../audit/audit-log.js";
import { AppError } from "../errors.js";
import type { AuthorizeResult, DeferredAllow } from "../gateway/gateway-service.js";
import { unstorableAt } from "../http/validation.js";
import { err, ok, type Result } from "../result.js";
import { amountOf, findOperation, groupDefault, paramProblems, pathParamsOf } from "./call-checks.js";
import type { PipelineContext, ProviderAnswer, ProviderCall } from "./call-types.js";
import { denialAnswer, refuse, refusePath } from "./denials.js";
import { type CallEnd, type Holds, holdsFor, NOT_SENT_UNEXPECTEDLY } from "./holds.js";
import { mcpToolName, type Operation, type ProviderSpec } from "./spec.js";
import { type Exchange, sendWithRetry, summary, withoutCredential } from "./upstream-exchange.js";
import {
  agentKey,
  buildUpstreamRequest,
  fill,
  type UpstreamRequestProblem,
  writeKeyOf,
} from "./upstream-request.js";

/**
 * The pipeline of one provider call: check the params against the operation, decide with the
 * policy (operation-group defaults when no grant speaks, parameter constraints from the grants),
 * reserve the budget, call upstream with the provider's credential (never the agent's token),
 * give back what the call held unless it went out, and record the outcome. Each step is a
 * function of an explicit context; the answer to the agent is built last, from a value.
 *
 * A write's decision line is committed before the call goes out (money may move: the audit log
 * is never behind the provider). A read's (an operation of a `kind: read` group) is committed
 * together with its outcome line, in one commit, after the provider answered and before the
 * agent hears anything: one disk flush per read instead of two.
 */

/** A call checked against its operation: path parameters as their segments, action and resource filled. */
interface ScopedCall {
  spec: ProviderSpec;
  op: Operation;
  call: ProviderCall;
  action: string;
  resource: string;
}

/** How an allowed call ended once it was sent, or could not be. */
type Sent =
  | { kind: "not_sent"; problem: UpstreamRequestProblem }
  | { kind: "exchanged"; exchange: Exchange; idempotencyKey: string | undefined; credentials: string[] };

/** How an allowed call ended before its audit line and answer. */
type Outcome = { kind: "over_budget"; reason: string; budget: string | undefined; why: string } | Sent;

/** One call through the pipeline, as `identity`. */
export async function callProvider(
  ctx: PipelineContext,
  identity: AgentIdentity,
  given: ProviderCall,
): Promise<ProviderAnswer> {
  const s = await scope(ctx, identity, given);
  if (s.spec.mcp) {
    const changed = await changedTool(ctx, identity, s);
    if (changed) return changed;
  }
  const d = await decide(ctx, identity, s);
  if ("commit" in d) return sendRead(ctx, identity, s, d);
  if (d.decision === "ALLOW") return sendAllowed(ctx, identity, s, d);
  if (d.code === "approval_required") return askForApproval(ctx, identity, s, d);
  return denialAnswer(ctx.clock.now(), identity, {
    action: s.action,
    resource: s.resource,
    reason: d.reason,
    eventId: d.event_id,
    code: d.code ?? "denied",
    requestAccess: d.request_access,
    status: d.http_status === 429 ? 429 : 403,
  });
}

/**
 * An upstream MCP tool whose definition is not the one people approved is refused before anything
 * is decided (no one-shot approval or budget is used for it), until a person approves the new one.
 */
async function changedTool(
  ctx: PipelineContext,
  identity: AgentIdentity,
  s: ScopedCall,
): Promise<ProviderAnswer | undefined> {
  const st = await ctx.mcp?.state(s.spec, s.op);
  if (st?.kind !== "changed") return undefined;
  return refuse(ctx, identity, {
    type: "gateway.denied",
    action: s.action,
    resource: s.resource,
    reason: `the MCP server ${s.spec.name} changed the definition of ${s.op.name} since it was approved; a person must review and approve the new one (butler mcp approve ${s.spec.name} ${s.op.name} ${st.hash}) before it can be called`,
    details: {
      deny_code: "tool_changed",
      provider: s.spec.name,
      operation: s.op.name,
      pinned_hash: st.pinnedHash,
      new_hash: st.hash,
      ...(s.call.via ? { via: s.call.via } : {}),
    },
  });
}

/** The call checked before anything is decided: its operation, storable params, path parameters, types. */
async function scope(
  ctx: PipelineContext,
  identity: AgentIdentity,
  given: ProviderCall,
): Promise<ScopedCall> {
  const found = findOperation(ctx.providers.providers, given.provider, given.operation);
  if (!found.ok) throw new AppError("NOT_FOUND", found.error);
  const { spec, op } = found.value;
  // Params may be stored (a one-shot request keeps the call's params, budgets its currency):
  // text the database cannot hold is the caller's error, before anything is decided.
  const unstorable = unstorableAt(given.params);
  if (unstorable)
    throw new AppError(
      "INVALID_INPUT",
      `${op.name}: ${unstorable}: must be text without NUL characters or unpaired surrogates`,
    );
  const checked = pathParamsOf(op, given.params);
  if (!checked.ok) return refusePath(ctx, identity, { spec, op, via: given.via }, checked.error);
  // Path parameters are part of the call as the strings they put in the path: the decision,
  // the one-shot hash and the request all see the same value.
  const call: ProviderCall = { ...given, params: checked.value };
  const problems = paramProblems(op, call.params);
  if (problems.length) throw new AppError("INVALID_INPUT", `${op.name}: ${problems.join("; ")}`);
  return {
    spec,
    op,
    call,
    action: fill(op.action, call.params, false),
    resource: fill(op.resource, call.params, false),
  };
}

/**
 * The policy's decision, audited by the gateway (a one-shot approval is used here). A read's
 * plain ALLOW comes back not yet written (DeferredAllow): its line commits with the outcome's.
 */
function decide(
  ctx: PipelineContext,
  identity: AgentIdentity,
  s: ScopedCall,
): Promise<AuthorizeResult | DeferredAllow> {
  const { spec, op, call } = s;
  const input = { action: s.action, resource: s.resource, params: call.params };
  const opts = {
    fallback: groupDefault(spec, op, identity.agent),
    details: { provider: spec.name, operation: op.name, ...(call.via ? { via: call.via } : {}) },
    eachCall:
      op.approval === "each_call"
        ? `a person must approve each call of ${spec.name} ${op.name} (approval: each_call in its spec)`
        : undefined,
    // A write changes something outside: its decision is on disk before it goes out, in every
    // durability mode (a read's decision commits with its outcome, as the mode says).
    durable: !op.read,
    pact: pactCallOf(spec, op, call.params),
  };
  return op.read
    ? ctx.gateway.authorizeDeferred(identity, input, opts)
    : ctx.gateway.authorize(identity, input, opts);
}

/** What the agent's pact speaks about: the call's MCP tool name, operation group and the amount it moves. */
function pactCallOf(spec: ProviderSpec, op: Operation, params: Record<string, unknown>) {
  const moved = op.amount ? amountOf(op.amount, params) : undefined;
  return {
    tool: mcpToolName(spec.name, op.name),
    group: op.group,
    amount: moved?.amount !== undefined ? { amount: moved.amount, currency: moved.currency } : undefined,
  };
}

/**
 * A call that needs a person: the one-shot request for exactly this call is filed at once (or
 * the pending one returned), and the agent is told where to follow it. After approval, the
 * identical call goes through once, with this call's idempotency key.
 */
async function askForApproval(
  ctx: PipelineContext,
  identity: AgentIdentity,
  s: ScopedCall,
  d: AuthorizeResult,
): Promise<ProviderAnswer> {
  const c = s.call;
  let approval: Record<string, unknown>;
  try {
    const filed = await ctx.butler.submit(
      identity,
      {
        denial_event_id: d.event_id,
        params: c.params,
        reason: c.reason?.trim() || `(no reason given) ${c.provider} ${c.operation}`,
      },
      { idempotencyKey: agentKey(identity, c.idempotencyKey) ?? `butler-${d.event_id}` },
    );
    if (filed.status === "already_allowed") {
      approval = { status: "already_allowed", note: "the call is allowed now; make it again" };
    } else {
      const base = d.request_access?.url ?? "/v1/access-requests";
      approval = {
        request_id: filed.request.id,
        status: filed.request.status,
        existing: filed.status === "existing",
        url: `${base}/${filed.request.id}`,
        expires_at: filed.request.expires_at,
        note: "A person approves exactly this call, once. Follow the request (GET url, or A2A); after approval make the identical call again (same parameters) and it goes through one time.",
      };
    }
  } catch (e) {
    if (!(e instanceof AppError)) throw e;
    approval = { error: e.message };
  }
  return denialAnswer(ctx.clock.now(), identity, {
    action: s.action,
    resource: s.resource,
    reason: d.reason,
    eventId: d.event_id,
    code: "approval_required",
    approvalRequired: approval,
  });
}

/**
 * An allowed read whose decision line is not written yet: sent, then the decision and its outcome
 * are committed in one commit, and only then is anything answered (when that commit fails, the
 * agent gets the error and none of the provider's data). A read moves nothing, so its going out
 * before the decision is on disk changes nothing the audit log must be ahead of; and it holds
 * nothing (no budget; a one-shot approval's use commits with its decision line, before the call).
 */
async function sendRead(
  ctx: PipelineContext,
  identity: AgentIdentity,
  s: ScopedCall,
  allow: DeferredAllow,
): Promise<ProviderAnswer> {
  let sent: Sent;
  try {
    sent = await buildAndSend(ctx, s, undefined);
  } catch (e) {
    // The decision is recorded however the call ended, as a write's is.
    await allow
      .commit((id) => ({
        ...outcomeBase(identity, s, id),
        type: "provider.failed",
        reason: NOT_SENT_UNEXPECTEDLY.why,
      }))
      .catch((auditError: unknown) =>
        ctx.log.error({ err: auditError }, "the decision of a failed read could not be audited"),
      );
    throw e;
  }
  if (sent.kind === "not_sent") {
    const problem = sent.problem;
    const d = await allow.commit((id) => notSentLine(identity, s, id, problem));
    throw notSentError(s, d.event_id, problem);
  }
  const exchanged = sent;
  const d = await allow.commit((id) => exchangeLine(identity, s, id, exchanged));
  return exchangeAnswer(ctx, s, d.event_id, exchanged);
}

/**
 * An allowed call: reserve, send, then record. What the call holds (its budget reservation, the
 * one-shot approval the decision used) is settled in one place, once, before the outcome is
 * recorded, and also when a step fails unexpectedly.
 */
async function sendAllowed(
  ctx: PipelineContext,
  identity: AgentIdentity,
  s: ScopedCall,
  d: AuthorizeResult,
): Promise<ProviderAnswer> {
  const bound = { action: s.action, resource: s.resource, params: s.call.params };
  const holds = holdsFor(ctx, identity, bound, d.one_shot?.grant_id);
  let outcome: Outcome | undefined;
  try {
    outcome = await reserveAndSend(ctx, identity, s, d, holds);
  } finally {
    await holds.settle(outcome ? endOf(outcome) : NOT_SENT_UNEXPECTEDLY);
  }
  if (outcome.kind === "over_budget") {
    const refused = await refuse(ctx, identity, {
      type: "budget.exceeded",
      action: s.action,
      resource: s.resource,
      reason: outcome.reason,
      details: {
        provider: s.spec.name,
        operation: s.op.name,
        budget: outcome.budget,
        decision_event_id: d.event_id,
      },
    });
    await ctx.incidents?.(identity.project, identity.agent, "budget_exceeded", refused.eventId);
    return refused;
  }
  if (outcome.kind === "not_sent") return recordNotSent(ctx, identity, s, d, outcome.problem);
  const answer = await recordExchange(ctx, identity, s, d, outcome);
  // Money moved: the agent's spend this month, against its pact's monthly expectation.
  const moved = s.op.amount && !outcome.exchange.failure && outcome.exchange.res.status < 300;
  const amount = moved ? pactCallOf(s.spec, s.op, s.call.params).amount : undefined;
  if (amount)
    await ctx.behaviour?.spent(identity.project, identity.agent, amount, d.event_id, outcome.idempotencyKey);
  return answer;
}

/** What the outcome means for what the call holds. */
function endOf(outcome: Outcome): CallEnd {
  switch (outcome.kind) {
    case "over_budget":
      return { sent: false, why: outcome.why };
    case "not_sent":
      return {
        sent: false,
        why:
          outcome.problem.kind === "unsafe_url"
            ? `the call was not sent: ${outcome.problem.message}`
            : "the call was not sent: the provider has no credential",
      };
    case "exchanged": {
      const x = outcome.exchange;
      if (x.failure && x.mayHaveRun) return { sent: "unknown", why: x.failure.reason };
      if (x.failure)
        return { sent: false, why: `${x.failure.reason}; the retry is sent with the same idempotency key` };
      return { sent: true, status: x.res.status };
    }
  }
}

/**
 * The steps of an allowed call up to the provider's answer: reserve the budget (recorded in
 * `holds` at once), build the request with the provider's credential, send it. Every way it can
 * end is a value; what it holds is settled by the caller.
 */
async function reserveAndSend(
  ctx: PipelineContext,
  identity: AgentIdentity,
  s: ScopedCall,
  d: AuthorizeResult,
  holds: Holds,
): Promise<Outcome> {
  const budget = await reserveBudget(ctx, identity, s, d);
  if (!budget.ok) return { kind: "over_budget", ...budget.error };
  holds.reserved(budget.value);
  return buildAndSend(ctx, s, writeKeyOf(s.op, identity, s.call.idempotencyKey, d));
}

/** Builds the request with the provider's credential and sends it; or why it cannot be sent. */
async function buildAndSend(
  ctx: PipelineContext,
  s: ScopedCall,
  idempotencyKey: string | undefined,
): Promise<Sent> {
  const { spec, op, call } = s;
  if (spec.mcp) {
    if (!ctx.mcp) throw new Error(`MCP server ${spec.name} is loaded but no MCP client is configured`);
    const { credentials, ...exchange } = await ctx.mcp.call(spec, op, call.params);
    return { kind: "exchanged", exchange, idempotencyKey, credentials };
  }
  const credential = spec.auth ? await ctx.credential(spec.auth.credential) : undefined;
  const built = buildUpstreamRequest({
    spec,
    op,
    params: call.params,
    baseUrl: ctx.baseUrls[spec.name] ?? spec.baseUrl,
    accept: call.accept,
    idempotencyKey,
    credential,
  });
  if (!built.ok) return { kind: "not_sent", problem: built.error };
  const retriable = op.idempotent || idempotencyKey !== undefined;
  const exchange = await sendWithRetry(ctx.upstream, spec.name, op, built.value, retriable);
  // Built, so the credential is there: the answer is scrubbed of it.
  return { kind: "exchanged", exchange, idempotencyKey, credentials: [credential!] };
}

/**
 * Budgets: a money-moving operation reserves its amount before the call, under a lock. The
 * reservation's id, undefined when there is nothing to give back; or why the call may not go out.
 */
async function reserveBudget(
  ctx: PipelineContext,
  identity: AgentIdentity,
  s: ScopedCall,
  d: AuthorizeResult,
): Promise<Result<number | undefined, { reason: string; budget: string | undefined; why: string }>> {
  const { op, call } = s;
  const budgets = op.amount ? ctx.projectBudgets(identity.project) : [];
  if (!op.amount || budgets.length === 0) return ok(undefined);
  const { amount, currency } = amountOf(op.amount, call.params);
  if (amount === undefined)
    return err({
      reason: `${op.name} moves money and ${identity.project} has budgets: params.${op.amount.field} must be a whole number of minor units`,
      budget: undefined,
      why: "the call was refused before it was sent: its amount is not a whole number",
    });
  const r = await ctx.budgets.reserve(budgets, {
    project: identity.project,
    agent: identity.agent,
    currency,
    amount,
    session: call.session,
    eventId: d.event_id,
    idempotencyKey: agentKey(identity, call.idempotencyKey),
  });
  if (!r.ok)
    return err({
      reason: r.reason,
      budget: r.budget,
      why: `the call was refused by a budget before it was sent: ${r.reason}`,
    });
  return ok(r.id);
}

/** What every outcome line of a call names: who, what, and the decision it follows. */
function outcomeBase(identity: AgentIdentity, s: ScopedCall, decisionEventId: string) {
  return {
    agent: identity.agent,
    project: identity.project,
    action: s.action,
    resource: s.resource,
    details: {
      provider: s.spec.name,
      operation: s.op.name,
      decision_event_id: decisionEventId,
      ...(s.call.via ? { via: s.call.via } : {}),
    },
  };
}

/** The outcome line of a call that could not be sent. */
function notSentLine(
  identity: AgentIdentity,
  s: ScopedCall,
  decisionEventId: string,
  problem: UpstreamRequestProblem,
): AuditEventInput {
  const unsafe = problem.kind === "unsafe_url";
  return {
    ...outcomeBase(identity, s, decisionEventId),
    type: "provider.failed",
    reason: unsafe ? `not sent: ${problem.message}` : `no credential ${problem.credential}`,
    ...(unsafe ? { httpStatus: 400 } : {}),
  };
}

/** The caller's error for a call that could not be sent. */
function notSentError(s: ScopedCall, decisionEventId: string, problem: UpstreamRequestProblem): AppError {
  if (problem.kind === "unsafe_url")
    return new AppError("INVALID_INPUT", `${s.op.name}: the call was not sent: ${problem.message}`, {
      event_id: decisionEventId,
    });
  return new AppError(
    "UNAVAILABLE",
    `provider ${s.spec.name} has no credential: set the environment variable ${problem.credential} (or ${problem.credential}_FILE) on the server`,
  );
}

/** A call that could not be sent: audited as failed, then the caller's error. */
async function recordNotSent(
  ctx: PipelineContext,
  identity: AgentIdentity,
  s: ScopedCall,
  d: AuthorizeResult,
  problem: UpstreamRequestProblem,
): Promise<never> {
  await ctx.audit.append(notSentLine(identity, s, d.event_id, problem));
  throw notSentError(s, d.event_id, problem);
}

/** The outcome line of a call that went out: its upstream status, latency and a summary (never its data). */
function exchangeLine(
  identity: AgentIdentity,
  s: ScopedCall,
  decisionEventId: string,
  outcome: Extract<Sent, { kind: "exchanged" }>,
): AuditEventInput {
  const { res, failure, attempts, latencyMs } = outcome.exchange;
  const base = outcomeBase(identity, s, decisionEventId);
  return {
    ...base,
    type: failure ? "provider.failed" : "provider.called",
    reason: failure?.reason ?? null,
    httpStatus: failure ? failure.status : (res?.status ?? null),
    details: {
      ...base.details,
      upstream_status: res?.status ?? null,
      latency_ms: Math.round(latencyMs * 10) / 10,
      attempts,
      idempotency_key: outcome.idempotencyKey,
      summary: res ? summary(res.body, res.headers["content-type"]) : undefined,
    },
  };
}

/** A call that went out: audited with its upstream status, then the provider's answer (or the failure). */
async function recordExchange(
  ctx: PipelineContext,
  identity: AgentIdentity,
  s: ScopedCall,
  d: AuthorizeResult,
  outcome: Extract<Sent, { kind: "exchanged" }>,
): Promise<ProviderAnswer> {
  await ctx.audit.append(exchangeLine(identity, s, d.event_id, outcome));
  return exchangeAnswer(ctx, s, d.event_id, outcome);
}

/** What the agent gets for a call that went out and is audited: the provider's answer, or the failure. */
function exchangeAnswer(
  ctx: PipelineContext,
  s: ScopedCall,
  eventId: string,
  outcome: Extract<Sent, { kind: "exchanged" }>,
): ProviderAnswer {
  const { spec, op } = s;
  const contentType = outcome.exchange.res?.headers["content-type"];
  const x = outcome.exchange;
  if (x.failure) {
    const { status, reason } = x.failure;
    ctx.log.warn({ provider: spec.name, operation: op.name, reason }, "provider call failed");
    return {
      status,
      contentType: "application/json",
      body: Buffer.from(
        JSON.stringify({
          error: { code: status === 504 ? "UPSTREAM_TIMEOUT" : "UPSTREAM_FAILED", message: reason },
          event_id: eventId,
        }),
      ),
      eventId: eventId,
    };
  }
  return {
    status: x.res.status,
    contentType,
    body: outcome.credentials.reduce((body, c) => withoutCredential(body, c), x.res.body),
    eventId: eventId,
  };
}
