import { createHash } from "node:crypto";
import type { AgentIdentity } from "../agents/token-service.js";
import type { AuditLog } from "../audit/audit-log.js";
import { canonicalJson } from "../audit/chain.js";
import type { Clock } from "../clock.js";
import type { Metrics } from "../metrics.js";
import { type CompiledProject, type Decision, evaluate, formatDuration } from "../policy/index.js";
import { LIFTABLE_DENIALS } from "../policy/scope.js";
import type { PolicyStore } from "../policy-store/policy-store.js";

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
  reason: string;
  event_id: string;
  grant_id?: string;
  /** The revision of the project's policy the decision was made with (null: no policy). */
  revision: number | null;
  /** What a proxy in the call path would answer: 200 or 403. */
  http_status: 200 | 403;
  /** When the allowing grant expires. */
  expires?: string;
  /** Who approved the allowing grant, when it came from an access request. */
  approved_by?: string;
  /** For a DENY that a human could lift: how to ask for exactly this call. */
  request_access?: RequestAccessHint;
}

export interface RequestAccessHint {
  method: "POST";
  url: string;
  body: {
    action: string;
    resource: string;
    branch?: string;
    ttl: string;
    reason: string;
    denial_event_id: string;
  };
  note: string;
}

export interface GatewayDeps {
  policies: Pick<PolicyStore, "index" | "ensureCurrent">;
  audit: Pick<AuditLog, "append">;
  clock: Clock;
  metrics: Metrics;
  publicUrl: () => string;
}

/**
 * The gateway's decision path: evaluate the call against the policy in force, write the decision
 * to the audit log, and answer only once the audit event is committed.
 */
export function createGateway(deps: GatewayDeps) {
  const { policies, audit, clock, metrics } = deps;

  function hint(
    identity: AgentIdentity,
    input: AuthorizeInput,
    d: Decision & { decision: "DENY" },
    eventId: string,
  ): RequestAccessHint | undefined {
    if (!LIFTABLE_DENIALS.has(d.code)) return undefined;
    const project = policies.index().projects.get(identity.project);
    if (!project) return undefined;
    const settings = project.document.settings;
    if (project.neverGrant.some((g) => g.match(input.action))) return undefined;
    return {
      method: "POST",
      url: `${deps.publicUrl()}/v1/access-requests`,
      body: {
        action: input.action,
        resource: input.resource ?? "",
        ...(input.branch !== undefined ? { branch: input.branch } : {}),
        ttl: formatDuration(settings.grantTtlDefaultSeconds),
        reason: "<say why you need this, for the human who decides>",
        denial_event_id: eventId,
      },
      note: `An approver of ${identity.project} decides; the grant covers exactly the denied call and expires after the TTL (at most ${formatDuration(settings.grantTtlMaxSeconds)}).`,
    };
  }

  return {
    async authorize(
      identity: AgentIdentity,
      input: AuthorizeInput,
      opts: {
        /**
         * When no grant speaks (the policy denies for want of a grant), a second opinion: the
         * operation-group default of a provider the project enables.
         */
        fallback?: (d: Decision & { decision: "DENY" }, project: CompiledProject) => Decision | undefined;
        /** Recorded with the decision (provider and operation of a call in the path). */
        details?: Record<string, unknown>;
      } = {},
    ): Promise<AuthorizeResult> {
      const started = process.hrtime.bigint();
      const call = {
        agent: identity.agent,
        project: identity.project,
        action: input.action,
        resource: input.resource ?? "",
        branch: input.branch,
        params: input.params,
      };
      const now = clock.now();
      let d = evaluate(policies.index(), call, now.getTime());
      // Before denying, make sure this instance is not behind: a grant approved through another
      // instance a moment ago must already count here (no stale-deny window).
      // The index may also have moved on by itself while we waited (a notification arrived), so
      // the decision is remade whenever the revision it was made with is no longer the one in force.
      if (d.decision === "DENY" && d.code !== "unknown_agent" && d.code !== "deny_pattern") {
        await policies.ensureCurrent(identity.project);
        if (policies.index().projects.get(identity.project)?.revision !== d.revision) {
          d = evaluate(policies.index(), call, now.getTime());
        }
      }
      if (
        d.decision === "DENY" &&
        opts.fallback &&
        (d.code === "no_service_grant" || d.code === "no_action_grant")
      ) {
        const project = policies.index().projects.get(identity.project);
        const second = project ? opts.fallback(d, project) : undefined;
        if (second) d = second;
      }
      const allow = d.decision === "ALLOW";
      const grantId = d.decision === "ALLOW" ? d.grantId : undefined;
      const denyCode = d.decision === "DENY" ? d.code : undefined;
      const expiresAt = d.decision === "ALLOW" ? d.expiresAt : undefined;
      const approvedBy = d.decision === "ALLOW" ? d.approvedBy?.join(", ") : undefined;
      const httpStatus = allow ? 200 : 403;
      const expires = expiresAt !== undefined ? new Date(expiresAt).toISOString() : undefined;
      let line: Awaited<ReturnType<AuditLog["append"]>>;
      try {
        line = await audit.append({
          type: allow ? "gateway.allowed" : "gateway.denied",
          agent: identity.agent,
          project: identity.project,
          action: input.action,
          resource: call.resource,
          decision: d.decision,
          reason: d.reason,
          httpStatus,
          at: now,
          details: {
            branch: input.branch,
            grant_id: grantId,
            approved_by: approvedBy,
            revision: d.revision ?? null,
            deny_code: denyCode,
            expires,
            token_id: identity.tokenId,
            ...opts.details,
            // The parameters themselves may hold personal data; their digest proves what was asked.
            params_sha256:
              input.params === undefined
                ? undefined
                : createHash("sha256").update(canonicalJson(input.params)).digest("hex"),
          },
        });
      } catch (e) {
        metrics.auditFailures.inc();
        throw e;
      }
      metrics.decisions.inc({ decision: d.decision });
      const result: AuthorizeResult = {
        decision: d.decision,
        reason: d.reason,
        event_id: line.event_id,
        revision: d.revision ?? null,
        http_status: httpStatus,
      };
      if (grantId !== undefined) result.grant_id = grantId;
      if (expires !== undefined) result.expires = expires;
      if (approvedBy !== undefined) result.approved_by = approvedBy;
      if (d.decision === "DENY") {
        const h = hint(identity, input, d, line.event_id);
        if (h) result.request_access = h;
      }
      metrics.decisionSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
      return result;
    },
  };
}

export type Gateway = ReturnType<typeof createGateway>;
