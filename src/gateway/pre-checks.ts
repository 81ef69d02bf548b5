import type { CompiledProject } from "../policy/compile.js";
import { describeViolations, type PactCall, type PactViolation, pactViolations } from "../policy/pact.js";
import { kindsIn, SENSITIVE_KINDS, scanParams } from "../policy/sensitive.js";
import { formatDuration } from "../policy/time.js";
import type { Decision } from "../policy/types.js";
import type { RateLimiter } from "./rate-limits.js";

/**
 * The steps before the policy decides (the seed's "before" steps): personal data and secrets in the
 * parameters (`data_protection`), then the rate limits (`rate_limits`). Either can refuse the call
 * outright, with a DENY no grant or request lifts; a finding that is only flagged or redacted is
 * recorded with the decision (kind and place, never the value).
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

export async function preChecks(
  project: CompiledProject | undefined,
  rateLimits: RateLimiter | undefined,
  call: { agent: string; project: string; action: string; params: Record<string, unknown> | undefined },
  now: Date,
  pactCall?: Omit<PactCall, "action">,
): Promise<PreChecked> {
  if (!project) return {};
  const doc = project.document;
  const pact = doc.pacts.get(call.agent);
  const list = pact ? pactViolations(pact, { action: call.action, ...pactCall }) : [];
  const violations =
    pact && list.length > 0
      ? { list, mode: pact.onViolation, text: describeViolations(call.agent, list) }
      : undefined;
  const checked = await steps(project, rateLimits, call, now);
  if (!violations) return checked;
  if (violations.mode === "deny" && !checked.deny)
    return {
      ...checked,
      violations,
      deny: {
        decision: "DENY",
        code: "pact_violation",
        reason: `${violations.text}; its pact says to deny such calls`,
        grantId: undefined,
        revision: project.revision,
      },
    };
  return { ...checked, violations };
}

/** Data protection, then rate limits. */
async function steps(
  project: CompiledProject,
  rateLimits: RateLimiter | undefined,
  call: { agent: string; project: string; action: string; params: Record<string, unknown> | undefined },
  now: Date,
): Promise<PreChecked> {
  const doc = project.document;
  let details: Record<string, unknown> | undefined;
  const dp = doc.dataProtection;
  const kinds = SENSITIVE_KINDS.filter((k) => dp[k] !== undefined);
  if (kinds.length > 0 && call.params !== undefined) {
    const findings = scanParams(call.params, kinds);
    const denied = kindsIn(dp, "deny");
    if (findings === undefined) {
      if (denied.length > 0)
        return {
          deny: deny(
            `the call's parameters are too large or too deeply nested to check for ${denied.map((k) => KIND_TEXT[k]).join(", ")} (data_protection of ${project.name})`,
            project,
          ),
        };
      details = { sensitive: "unchecked" };
    } else if (findings.length > 0) {
      const refused = findings.find((f) => dp[f.kind] === "deny");
      if (refused)
        return {
          deny: deny(
            `${refused.path} holds ${KIND_TEXT[refused.kind]}, which ${project.name} does not allow in call parameters (data_protection: ${refused.kind}: deny)`,
            project,
          ),
          details: { sensitive: findings.map((f) => ({ kind: f.kind, path: f.path, mode: dp[f.kind] })) },
        };
      details = { sensitive: findings.map((f) => ({ kind: f.kind, path: f.path, mode: dp[f.kind] })) };
    }
  }
  if (rateLimits && doc.rateLimits.length > 0) {
    const refused = await rateLimits.take(call, doc.rateLimits, now);
    if (refused) {
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
        details: { ...details, rate_limit: l.id, retry_after_seconds: refused.retryAfterSeconds },
      };
    }
  }
  return details ? { details } : {};
}

function deny(reason: string, project: CompiledProject): Decision & { decision: "DENY" } {
  return { decision: "DENY", code: "sensitive_data", reason, grantId: undefined, revision: project.revision };
}
