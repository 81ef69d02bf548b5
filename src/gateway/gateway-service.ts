import { createHash } from "node:crypto";
import type { AgentIdentity } from "../agents/token-service.js";
import type { AuditEventInput, AuditLog } from "../audit/audit-log.js";
import { type AuditLine, canonicalJson } from "../audit/chain.js";
import type { Clock } from "../clock.js";
import { type BoundCall, callHash, type OneShots } from "../grants/one-shot.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import {
  approvalRequired,
  type CompiledProject,
  type Decision,
  evaluate,
  formatDuration,
  type PolicyIndex,
} from "../policy/index.js";
import type { PactCall } from "../policy/pact.js";
import { LIFTABLE_DENIALS, ONE_SHOT_DENIALS } from "../policy/scope.js";
import { protectionKinds, redactText, type SensitiveKind } from "../policy/sensitive.js";
import { TRUST_PENALTIES, trustLimit, trustMayLimit, trustRuleCondition } from "../policy/trust.js";
import type { PolicyStore } from "../policy-store/policy-store.js";
import type { Pacts } from "./pacts.js";
import { type PreChecked, preChecks } from "./pre-checks.js";
import type { RateLimiter } from "./rate-limits.js";
import type { Trust } from "./trust.js";
import type { Usage } from "./usage.js";

/** What an agent asks: may I do `action` on `resource` (on `branch`, with `params`)? */
export interface AuthorizeInput {
  action: string;
  resource?: string | undefined;
  branch?: string | undefined;
  params?: Record<string, unknown> | undefined;
}

/** The answer, as `POST /v1/authorize` returns it. */
export interface AuthorizeResult {
  decision: "ALLOW" | "DENY";
  /** For a DENY: why, as a stable code (no_action_grant, constraint_failed, approval_required, ...). */
  code?: string;
  reason: string;
  event_id: string;
  grant_id?: string;
  /** The revision of the project's policy the decision was made with (null: no policy). */
  revision: number | null;
  /** What a proxy in the call path would answer: 200 or 403. */
  http_status: 200 | 403 | 429;
  /** When the allowing grant expires. */
  expires?: string;
  /** Who approved the allowing grant, when it came from an access request. */
  approved_by?: string;
  /** For a DENY that a human could lift: how to ask for exactly this call. */
  request_access?: RequestAccessHint;
  /** For a DENY by a rate limit: seconds until there is room again. */
  retry_after_seconds?: number;
  /** For an ALLOW by a one-shot approval: the idempotency key the approved call is sent with. */
  one_shot?: { grant_id: string; idempotency_key: string | null };
}

export interface RequestAccessHint {
  method: "POST";
  url: string;
  body: {
    action?: string;
    resource?: string;
    branch?: string;
    ttl: string;
    reason: string;
    denial_event_id: string;
    /** For a one-shot request: the call's parameters, exactly as denied. */
    params?: Record<string, unknown>;
  };
  note: string;
}

export interface GatewayDeps {
  policies: Pick<PolicyStore, "index" | "ensureCurrent">;
  audit: Pick<AuditLog, "append" | "appendPair" | "assertAccepting">;
  clock: Clock;
  metrics: Metrics;
  publicUrl: () => string;
  /** Single-use grants of one-shot approvals. */
  oneShots: Pick<OneShots, "consume">;
  /** Counts calls against the projects' rate limits (none: rate limits are not enforced). */
  rateLimits?: RateLimiter | undefined;
  log?: Logger | undefined;
  /** Pacts set through the admin API (in memory on every instance). */
  pacts?: Pick<Pacts, "get"> | undefined;
  /** Agents' trust scores (projects with `trust:`): read for calls a trust rule could limit. */
  trust?: Pick<Trust, "score" | "incident"> | undefined;
  /** Counts each agent's use of tools, for drift detection (in memory; stored in batches). */
  usage?: Pick<Usage, "note" | "level"> | undefined;
}

/** Options of one authorization (calls in the path pass these). */
export interface AuthorizeOptions {
  /**
   * When no grant speaks (the policy denies for want of a grant), a second opinion: the
   * operation-group default of a provider the project enables.
   */
  fallback?: (d: Decision & { decision: "DENY" }, project: CompiledProject) => Decision | undefined;
  /** Recorded with the decision (provider and operation of a call in the path). */
  details?: Record<string, unknown>;
  /** Why every call of this operation needs a person (a provider spec's `approval: each_call`). */
  eachCall?: string | undefined;
  /** What a behavioural pact speaks about besides the action: a provider call's tool, group and amount. */
  pact?: Omit<PactCall, "action"> | undefined;
  /**
   * The decision line must reach the disk before the answer, whatever AUDIT_DURABILITY says: the
   * caller acts on an ALLOW outside (a provider write goes out), which the log must be ahead of.
   */
  durable?: boolean;
}

type Call = BoundCall & { agent: string; project: string; params: Record<string, unknown> | undefined };

/**
 * An ALLOW whose audit line is not written yet: a read in the call path commits it together with
 * the line of its outcome, after the provider answered, in one commit. Nothing may be answered
 * from it before `commit` resolved.
 */
export interface DeferredAllow {
  decision: "ALLOW";
  /**
   * Writes the decision's line and the line `outcome` makes of the decision's event id, in one
   * commit; the decision's result once both are committed (rejects, and counts an audit failure,
   * when they are not).
   */
  commit(outcome: (decisionEventId: string) => AuditEventInput): Promise<AuthorizeResult>;
}

/**
 * The gateway's decision path: evaluate the call against the policy in force, write the decision
 * to the audit log, and answer only once the audit event is committed.
 */
export function createGateway(deps: GatewayDeps) {
  return {
    authorize: async (
      identity: AgentIdentity,
      input: AuthorizeInput,
      opts: AuthorizeOptions = {},
    ): Promise<AuthorizeResult> => {
      // Not asked to defer, it writes every answer before returning it: never a DeferredAllow.
      return (await authorize(deps, identity, input, opts, false)) as AuthorizeResult;
    },
    /**
     * Like `authorize`, except that a plain ALLOW (not one using a one-shot approval, whose line
     * commits with the use) is not written yet but returned as a DeferredAllow: for reads, whose
     * decision line may be committed with their outcome. Every other answer is committed first.
     */
    authorizeDeferred: (
      identity: AgentIdentity,
      input: AuthorizeInput,
      opts: AuthorizeOptions = {},
    ): Promise<AuthorizeResult | DeferredAllow> => authorize(deps, identity, input, opts, true),
  };
}

async function authorize(
  deps: GatewayDeps,
  identity: AgentIdentity,
  input: AuthorizeInput,
  opts: AuthorizeOptions,
  deferAllow: boolean,
): Promise<AuthorizeResult | DeferredAllow> {
  const { audit, metrics } = deps;
  const started = process.hrtime.bigint();
  const call: Call = {
    agent: identity.agent,
    project: identity.project,
    action: input.action,
    resource: input.resource ?? "",
    branch: input.branch,
    params: input.params,
  };
  const now = deps.clock.now();
  const project = deps.policies.index().projects.get(call.project);
  // Personal data and secrets, the agent's pact, rate limits: before the policy decides.
  const pre = await preChecks(
    project,
    deps.rateLimits,
    call,
    now,
    opts.pact,
    deps.pacts?.get(call.project, call.agent)?.pact,
  );
  const details = pre.details ? { ...opts.details, ...pre.details } : opts.details;
  if (project)
    deps.usage?.note(call.project, call.agent, opts.pact?.tool ?? call.action, opts.pact?.group, now);
  // Reasons may quote parameters (a constraint, an approval rule's `when`): what data_protection
  // redacts is redacted from the line's reason too.
  const redact = project ? protectionKinds(project.document.dataProtection).redact : [];
  const lineCtx: LineContext = { identity, input, resource: call.resource, now, details, redact };
  let trustLimited = false;
  const decided = async () => {
    const d = await decide(deps, call, now, opts);
    const limited = await limitByTrust(deps, project, call, d, opts);
    trustLimited = limited !== d;
    return limited;
  };
  const ruled = pre.deny
    ? { d: pre.deny as Decision, oneShot: undefined }
    : await applyApprovalRule(deps, identity, call, await decided(), lineCtx, opts);
  const { d, oneShot } = ruled;
  const entry = ruled.committed?.entry ?? decisionLine(d, lineCtx, ruled.approval, oneShot !== undefined);
  // A call departing from its pact is written at once, with its `pact.violated` line after it.
  if (deferAllow && d.decision === "ALLOW" && !ruled.committed && !pre.violations) {
    // The caller acts before the line is written: only when it could be written now. (The
    // commit can still fail, say the database going away meanwhile; then the caller hears so.)
    audit.assertAccepting();
    metrics.decisionSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
    return {
      decision: "ALLOW",
      async commit(outcome) {
        let line: AuditLine;
        try {
          [line] = await audit.appendPair(entry, outcome);
        } catch (e) {
          metrics.auditFailures.inc();
          throw e;
        }
        metrics.decisions.inc({ decision: d.decision });
        return resultOf(deps, identity, input, d, entry, line, oneShot);
      },
    };
  }
  let line: AuditLine;
  try {
    line = ruled.committed?.line ?? (await audit.append(entry, { durable: opts.durable }));
  } catch (e) {
    metrics.auditFailures.inc();
    throw e;
  }
  if (pre.violations) await audit.append(violationLine(identity, input, call.resource, pre.violations, line));
  await countIncident(deps, project, call, d, pre, line, trustLimited);
  metrics.decisions.inc({ decision: d.decision });
  const result = resultOf(deps, identity, input, d, entry, line, oneShot);
  metrics.decisionSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
  return result;
}

/**
 * A trust rule's limit on a call that could go through: while the agent's score is below the
 * rule's, its constraints must hold too (the score is read only when a rule could limit the call).
 * That is an allowed call, and a call a one-shot approval could let through (a denial a grant
 * could lift, of an action a person approves call by call): a low score is not bypassed by asking.
 */
async function limitByTrust(
  deps: GatewayDeps,
  project: CompiledProject | undefined,
  call: Call,
  d: Decision,
  opts: AuthorizeOptions,
): Promise<Decision> {
  const trust = project?.document.trust;
  if (!trust || !deps.trust) return d;
  // Cheapest first: a denial no approval could turn into an ALLOW is final as it stands.
  if (d.decision === "DENY" && !LIFTABLE_DENIALS.has(d.code)) return d;
  const needs = trustMayLimit(project!, call.agent, call.action);
  if (!needs) return d;
  const oneShotPossible =
    d.decision === "DENY" && (opts.eachCall !== undefined || approvalRequired(project!, call) !== undefined);
  if (d.decision !== "ALLOW" && !oneShotPossible) return d;
  // Both are kept in memory once read: no database round trip on the call's path.
  const score = needs.score ? await deps.trust.score(call.project, call.agent, trust.initial) : undefined;
  const level = needs.drift && deps.usage ? await deps.usage.level(call.project, call.agent) : "none";
  const limit = trustLimit(project!, call, score, level);
  if (!limit) return d;
  return {
    decision: "DENY",
    code: "constraint_failed",
    reason: `trust rule ${limit.rule.id} of ${call.project}: ${trustRuleCondition(limit.rule, call.agent, score, level)}, so ${limit.detail}`,
    grantId: undefined,
    revision: d.revision,
  };
}

/** An incident lowers the agent's trust score (projects with `trust:`); a trust rule's own refusal is none. */
async function countIncident(
  deps: GatewayDeps,
  project: CompiledProject | undefined,
  call: Call,
  d: Decision,
  pre: PreChecked,
  line: AuditLine,
  trustLimited: boolean,
): Promise<void> {
  const trust = project?.document.trust;
  if (!trust || !deps.trust) return;
  const causes: string[] = [];
  if (d.decision === "DENY" && !trustLimited && TRUST_PENALTIES[d.code] !== undefined) causes.push(d.code);
  // A pact violation the pact only flags counts as well (a denied one is the deny code above).
  if (pre.violations?.mode === "flag") causes.push("pact_violation_flagged");
  if (causes.length === 0) return;
  const penalty = causes.reduce((sum, c) => sum + TRUST_PENALTIES[c]!, 0);
  try {
    await deps.trust.incident(
      call.project,
      call.agent,
      trust.initial,
      penalty,
      causes.join("+"),
      line.event_id,
    );
  } catch (e) {
    // The decision is committed and answered as it stands; a lost incident only leaves the score higher.
    deps.log?.error(
      { err: e, agent: call.agent, project: call.project },
      "a trust incident could not be recorded",
    );
  }
}

/** The `pact.violated` line of a call that departs from its agent's pact: what, and by how much. */
function violationLine(
  identity: AgentIdentity,
  input: AuthorizeInput,
  resource: string,
  v: NonNullable<PreChecked["violations"]>,
  decision: AuditLine,
): AuditEventInput {
  return {
    type: "pact.violated",
    agent: identity.agent,
    project: identity.project,
    action: input.action,
    resource,
    reason: v.text,
    details: {
      decision_event_id: decision.event_id,
      mode: v.mode,
      violations: v.list.map((x) => ({ ...x })),
    },
  };
}

/** The answer, read from the decision and its committed line. */
function resultOf(
  deps: GatewayDeps,
  identity: AgentIdentity,
  input: AuthorizeInput,
  d: Decision,
  entry: ReturnType<typeof decisionLine>,
  line: AuditLine,
  oneShot: AuthorizeResult["one_shot"],
): AuthorizeResult {
  const { grant_id, expires, approved_by } = entry.details;
  const result: AuthorizeResult = {
    decision: d.decision,
    reason: d.reason,
    event_id: line.event_id,
    revision: d.revision ?? null,
    http_status: entry.httpStatus,
  };
  if (grant_id !== undefined) result.grant_id = grant_id;
  if (expires !== undefined) result.expires = expires;
  if (approved_by !== undefined) result.approved_by = approved_by;
  if (oneShot) result.one_shot = oneShot;
  if (d.decision === "DENY") {
    result.code = d.code;
    const retry = (entry.details as { retry_after_seconds?: number }).retry_after_seconds;
    if (retry !== undefined) result.retry_after_seconds = retry;
    const h = hint(deps, identity, input, d, line.event_id);
    if (h) result.request_access = h;
  }
  return result;
}

/** The policy's decision, against the newest revision when it denies, with the provider's fallback. */
async function decide(deps: GatewayDeps, call: Call, now: Date, opts: AuthorizeOptions): Promise<Decision> {
  const { policies } = deps;
  let d = withFallback(policies.index(), evaluate(policies.index(), call, now.getTime()), call, opts);
  // Before denying, make sure this instance is not behind: a grant approved through another
  // instance a moment ago must already count here (no stale-deny window).
  // The index may also have moved on by itself while we waited (a notification arrived), so
  // the decision is remade whenever the revision it was made with is no longer the one in force.
  // An ALLOW (a grant's, or a provider's operation-group default) is served from the index in
  // force without asking the database, as every ALLOW is.
  if (d.decision === "DENY" && d.code !== "unknown_agent" && d.code !== "deny_pattern") {
    await policies.ensureCurrent(call.project);
    if (policies.index().projects.get(call.project)?.revision !== d.revision)
      d = withFallback(policies.index(), evaluate(policies.index(), call, now.getTime()), call, opts);
  }
  return d;
}

/** A denial for want of a grant, put to the second opinion (a provider's operation-group default). */
function withFallback(index: PolicyIndex, d: Decision, call: Call, opts: AuthorizeOptions): Decision {
  if (
    d.decision !== "DENY" ||
    !opts.fallback ||
    (d.code !== "no_service_grant" && d.code !== "no_action_grant")
  )
    return d;
  const project = index.projects.get(call.project);
  return (project && opts.fallback(d, project)) ?? d;
}

/**
 * A person approves each call of some actions (require_approval): the policy's ALLOW, or a
 * denial a grant could lift, becomes "approval required" unless a single-use grant for exactly
 * this call is waiting, which this decision then uses up (the use and its ALLOW line are one
 * transaction: `committed`).
 */
async function applyApprovalRule(
  deps: GatewayDeps,
  identity: AgentIdentity,
  call: Call,
  d: Decision,
  lineCtx: LineContext,
  opts: AuthorizeOptions,
): Promise<{
  d: Decision;
  committed?: { line: AuditLine; entry: ReturnType<typeof decisionLine> };
  oneShot?: AuthorizeResult["one_shot"];
  approval?: { rule: string; call_sha256: string };
}> {
  if (d.decision !== "ALLOW" && !LIFTABLE_DENIALS.has(d.code)) return { d };
  const project = deps.policies.index().projects.get(identity.project);
  const need =
    project &&
    (approvalRequired(project, call) ??
      (opts.eachCall ? { rule: "operation", reason: opts.eachCall } : undefined));
  if (!project || !need) return { d };
  const hash = callHash(call);
  const approval = { rule: need.rule, call_sha256: hash };
  const allowedOnce = (u: { id: string; approvedBy: string[] }): Decision => ({
    decision: "ALLOW",
    reason: `allowed once by one-shot approval ${u.id} (approved by ${u.approvedBy.join(", ")})`,
    grantId: u.id,
    expiresAt: undefined,
    approvedBy: u.approvedBy,
    revision: project.revision,
  });
  let used: Awaited<ReturnType<typeof deps.oneShots.consume>>;
  // The line the use commits with: the answer is read from it (built once).
  let entry: ReturnType<typeof decisionLine> | undefined;
  try {
    used = await deps.oneShots.consume(identity, call, hash, (u) => {
      entry = decisionLine(allowedOnce(u), lineCtx, approval, true);
      return entry;
    });
  } catch (e) {
    deps.metrics.auditFailures.inc();
    throw e;
  }
  if (used.status === "used")
    return {
      d: allowedOnce(used),
      committed: { line: used.line, entry: entry! },
      oneShot: { grant_id: used.id, idempotency_key: used.idempotencyKey },
      approval,
    };
  const denied = (code: "one_shot_used" | "approval_required", reason: string): Decision => ({
    decision: "DENY",
    code,
    reason,
    grantId: undefined,
    revision: project.revision,
  });
  if (used.status === "spent")
    return {
      d: denied(
        "one_shot_used",
        `the one-shot approval ${used.id} of this exact call was used at ${used.usedAt.toISOString()}; ${need.reason}`,
      ),
      approval,
    };
  return { d: denied("approval_required", need.reason), approval };
}

/** How to ask for access after a denial, when asking makes sense. */
function hint(
  deps: GatewayDeps,
  identity: AgentIdentity,
  input: AuthorizeInput,
  d: Decision & { decision: "DENY" },
  eventId: string,
): RequestAccessHint | undefined {
  const project = deps.policies.index().projects.get(identity.project);
  if (!project) return undefined;
  const settings = project.document.settings;
  const url = `${deps.publicUrl()}/v1/access-requests`;
  const reason = "<say why you need this, for the human who decides>";
  const ttl = formatDuration(settings.grantTtlDefaultSeconds);
  if (ONE_SHOT_DENIALS.has(d.code))
    return {
      method: "POST",
      url,
      body: { ttl, reason, denial_event_id: eventId, params: input.params ?? {} },
      note: `An approver of ${identity.project} approves exactly this call, once: after approval, make the identical call again (same parameters) within the TTL and it goes through one time.`,
    };
  if (!LIFTABLE_DENIALS.has(d.code)) return undefined;
  if (project.neverGrant.some((g) => g.match(input.action))) return undefined;
  return {
    method: "POST",
    url,
    body: {
      action: input.action,
      resource: input.resource ?? "",
      ...(input.branch !== undefined ? { branch: input.branch } : {}),
      ttl,
      reason,
      denial_event_id: eventId,
    },
    note: `An approver of ${identity.project} decides; the grant covers exactly the denied call and expires after the TTL (at most ${formatDuration(settings.grantTtlMaxSeconds)}).`,
  };
}

/** What a decision's audit line is made of besides the decision itself. */
interface LineContext {
  identity: AgentIdentity;
  input: AuthorizeInput;
  resource: string;
  now: Date;
  details: Record<string, unknown> | undefined;
  /** The kinds data_protection redacts: never written into the line's reason. */
  redact?: readonly SensitiveKind[];
}

/**
 * The audit line of a decision: appended through the group committer, or written in the
 * transaction that uses a one-shot approval. The answer to the agent is read from it.
 */
function decisionLine(
  d: Decision,
  c: LineContext,
  approval: { rule: string; call_sha256: string } | undefined,
  usedOneShot: boolean,
): AuditEventInput & {
  httpStatus: 200 | 403 | 429;
  details: { grant_id?: string; expires?: string; approved_by?: string };
} {
  const allow = d.decision === "ALLOW";
  return {
    type: allow ? "gateway.allowed" : "gateway.denied",
    agent: c.identity.agent,
    project: c.identity.project,
    action: c.input.action,
    resource: c.resource,
    decision: d.decision,
    reason: c.redact?.length ? redactText(d.reason, c.redact) : d.reason,
    httpStatus: allow ? 200 : d.code === "rate_limited" ? 429 : 403,
    at: c.now,
    details: {
      branch: c.input.branch,
      grant_id: allow ? d.grantId : undefined,
      approved_by: allow ? d.approvedBy?.join(", ") : undefined,
      // Every ALLOW a break-glass grant gives says so (its approver names who broke the glass).
      break_glass: allow && d.approvedBy?.[0]?.startsWith("break-glass:") ? true : undefined,
      revision: d.revision ?? null,
      deny_code: d.decision === "DENY" ? d.code : undefined,
      expires: allow && d.expiresAt !== undefined ? new Date(d.expiresAt).toISOString() : undefined,
      token_id: c.identity.tokenId,
      approval_rule: approval?.rule,
      call_sha256: approval?.call_sha256,
      one_shot: usedOneShot ? true : undefined,
      ...c.details,
      // The parameters themselves may hold personal data; their digest proves what was asked.
      params_sha256:
        c.input.params === undefined
          ? undefined
          : createHash("sha256").update(canonicalJson(c.input.params)).digest("hex"),
    },
  };
}

export type Gateway = ReturnType<typeof createGateway>;
