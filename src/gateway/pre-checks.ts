import type { CompiledProject } from "../policy/compile.js";
import {
  classificationViolation,
  describeViolations,
  type PactCall,
  type PactDef,
  type PactViolation,
  pactViolations,
} from "../policy/pact.js";
import { detect, protectionKinds, SENSITIVE_KINDS, scanParams } from "../policy/sensitive.js";
import { formatDuration } from "../policy/time.js";
import type { Decision } from "../policy/types.js";
import type { RateLimiter } from "./rate-limits.js";

/**
 * The steps before the policy decides (the seed's "before" steps), in this order: personal data and
 * secrets in the parameters and resource (`data_protection`), the agent's behavioural pact
 * (`pacts`), then the rate limits (`rate_limits`). Each can refuse the call outright, with a DENY no
 * grant or request lifts; a finding that is only flagged or redacted is recorded with the decision
 * (kind and place, never the value), a pact violation in its own `pact.violated` line.
 */
export interface PreChecked {
  /** The refusal, when a step refuses the call. */
  deny?: Decision & { decision: "DENY" };
  /** For a rate limit: seconds until there is room again. */
  retryAfterSeconds?: number;
  /** Recorded on the decision's audit line. */
  details?: Record<string, unknown>;
  /** How the call departs from its agent's pact (audited as `pact.violated` after the decision). */
  violations?: { list: PactViolation[]; mode: "flag" | "deny"; text: string };
}

const KIND_TEXT: Record<string, string> = {
  email: "an e-mail address",
  iban: "an IBAN",
  card_number: "a card number",
  api_key: "an API key",
  private_key: "a private key",
};

/** At most this many findings are recorded on a line (with `sensitive_count`, how many there were). */
const MAX_FINDINGS = 50;

export async function preChecks(
  project: CompiledProject | undefined,
  rateLimits: RateLimiter | undefined,
  call: {
    agent: string;
    project: string;
    action: string;
    resource?: string | undefined;
    params: Record<string, unknown> | undefined;
  },
  now: Date,
  pactCall?: Omit<PactCall, "action">,
  /** A pact set through the admin API: it takes precedence over the policy's (null: the policy's applies). */
  apiPact?: PactDef | null,
): Promise<PreChecked> {
  if (!project) return {};
  // 1. Personal data and secrets.
  const dp = dataProtection(project, call);
  if (dp.deny) return dp;
  // 2. The agent's pact: a pact that says deny refuses here, before the call counts against a limit.
  const pact = apiPact ?? project.document.pacts.get(call.agent);
  const list = pact ? pactViolations(pact, { action: call.action, ...pactCall }) : [];
  // The data the call carries, against the class of data the pact expects the agent to handle.
  if (pact?.expectedClassification && pact.expectedClassification !== "restricted") {
    const found = call.params === undefined ? [] : scanParams(call.params, SENSITIVE_KINDS);
    // Too large or too deep to search: it cannot be shown to stay within the class (fail closed).
    if (found === undefined)
      list.push({
        rule: "expected_classification",
        actual: "parameters too large or too deeply nested to check",
        expected: pact.expectedClassification,
      });
    const v = classificationViolation(pact, [
      ...(found ?? []).map((f) => f.kind),
      ...(call.resource ? detect(call.resource, SENSITIVE_KINDS) : []),
    ]);
    if (v) list.push(v);
  }
  const violations =
    pact && list.length > 0
      ? { list, mode: pact.onViolation, text: describeViolations(call.agent, list) }
      : undefined;
  if (violations?.mode === "deny")
    return {
      ...dp,
      violations,
      deny: {
        decision: "DENY",
        code: "pact_violation",
        reason: `${violations.text}; its pact says to deny such calls`,
        grantId: undefined,
        revision: project.revision,
      },
    };
  // 3. Rate limits.
  const limited = await rateLimit(project, rateLimits, call, now);
  const details = dp.details || limited.details ? { ...dp.details, ...limited.details } : undefined;
  return {
    ...(limited.deny ? { deny: limited.deny, retryAfterSeconds: limited.retryAfterSeconds } : {}),
    ...(details ? { details } : {}),
    ...(violations ? { violations } : {}),
  };
}

/** What the project's data_protection finds in the call's parameters (and resource), and whether it refuses it. */
function dataProtection(
  project: CompiledProject,
  call: { resource?: string | undefined; params: Record<string, unknown> | undefined },
): PreChecked {
  const dp = project.document.dataProtection;
  const { all: kinds, deny: denied } = protectionKinds(dp);
  if (kinds.length === 0) return {};
  const inParams = call.params === undefined ? [] : scanParams(call.params, kinds);
  const findings =
    inParams === undefined
      ? undefined
      : [
          ...(call.resource ? detect(call.resource, kinds).map((kind) => ({ kind, path: "resource" })) : []),
          ...inParams,
        ];
  if (findings === undefined) {
    if (denied.length > 0)
      return {
        deny: deny(
          `the call's parameters are too large or too deeply nested to check for ${denied.map((k) => KIND_TEXT[k]).join(", ")} (data_protection of ${project.name})`,
          project,
        ),
      };
    return { details: { sensitive: "unchecked" } };
  }
  if (findings.length === 0) return {};
  const recorded = {
    sensitive: findings.slice(0, MAX_FINDINGS).map((f) => ({ kind: f.kind, path: f.path, mode: dp[f.kind] })),
    ...(findings.length > MAX_FINDINGS ? { sensitive_count: findings.length } : {}),
  };
  const refused = findings.find((f) => dp[f.kind] === "deny");
  if (refused)
    return {
      deny: deny(
        `${refused.path} holds ${KIND_TEXT[refused.kind]}, which ${project.name} does not allow in calls (data_protection: ${refused.kind}: deny)`,
        project,
      ),
      details: recorded,
    };
  return { details: recorded };
}

async function rateLimit(
  project: CompiledProject,
  rateLimits: RateLimiter | undefined,
  call: { agent: string; project: string; action: string },
  now: Date,
): Promise<PreChecked> {
  if (!rateLimits || project.document.rateLimits.length === 0) return {};
  const refused = await rateLimits.take(call, project.document.rateLimits, now);
  if (!refused) return {};
  const l = refused.limit;
  return {
    deny: {
      decision: "DENY",
      code: "rate_limited",
      reason: `rate limit ${l.id} of ${project.name}: at most ${l.maxCalls} call(s) in ${formatDuration(l.windowSeconds)} for ${call.agent}${l.per === "action" ? ` of ${call.action}` : ""}; try again in ${refused.retryAfterSeconds} s`,
      grantId: undefined,
      revision: project.revision,
    },
    retryAfterSeconds: refused.retryAfterSeconds,
    details: { rate_limit: l.id, retry_after_seconds: refused.retryAfterSeconds },
  };
}

function deny(reason: string, project: CompiledProject): Decision & { decision: "DENY" } {
  return { decision: "DENY", code: "sensitive_data", reason, grantId: undefined, revision: project.revision };
}
