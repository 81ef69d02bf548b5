import { createHash } from "node:crypto";
import type { AgentIdentity } from "../agents/token-service.js";
import type { AuditLog } from "../audit/audit-log.js";
import { canonicalJson } from "../audit/chain.js";
import type { Clock } from "../clock.js";
import type { Metrics } from "../metrics.js";
import { type Decision, type DenyCode, evaluate, formatDuration } from "../policy/index.js";
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
  policies: Pick<PolicyStore, "index">;
  audit: Pick<AuditLog, "append">;
  clock: Clock;
  metrics: Metrics;
  publicUrl: () => string;
}

/** Denials a new grant could lift. A deny pattern or an unknown agent cannot be lifted by a request. */
const REQUESTABLE: ReadonlySet<DenyCode> = new Set([
  "no_service_grant",
  "no_action_grant",
  "agent_not_covered",
  "resource_not_covered",
  "branch_not_covered",
  "grant_expired",
  "constraint_failed",
]);

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
    if (!REQUESTABLE.has(d.code)) return undefined;
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
    async authorize(identity: AgentIdentity, input: AuthorizeInput): Promise<AuthorizeResult> {
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
      const d = evaluate(policies.index(), call, now.getTime());
      const allow = d.decision === "ALLOW";
      const httpStatus = allow ? 200 : 403;
      const expires = allow && d.expiresAt !== undefined ? new Date(d.expiresAt).toISOString() : undefined;
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
            grant_id: allow ? d.grantId : undefined,
            revision: d.revision ?? null,
            deny_code: allow ? undefined : d.code,
            expires,
            token_id: identity.tokenId,
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
      if (allow) result.grant_id = d.grantId;
      if (expires !== undefined) result.expires = expires;
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
