import type { CompiledConstraint, CompiledProject } from "./compile.js";
import type { Glob } from "./glob.js";
import type { Call } from "./types.js";

/**
 * A call's parameters against a policy's checks (pure): grants' `constraints`, which must hold
 * for the grant to allow, and `require_approval` rules' `when`, which send a call to a person.
 */

export function matchesAny(globs: readonly Glob[], s: string): boolean {
  for (let i = 0; i < globs.length; i++) if (globs[i]!.match(s)) return true;
  return false;
}

const DECIMAL = /^-?\d{1,30}(\.\d{1,30})?$/;

export function checkConstraint(
  c: CompiledConstraint,
  params: Record<string, unknown> | undefined,
): string | undefined {
  let v: unknown = params;
  for (const k of c.path) {
    if (v === null || typeof v !== "object" || Array.isArray(v) || !Object.hasOwn(v, k)) {
      return `the call has no parameter ${c.param}, which is limited`;
    }
    v = (v as Record<string, unknown>)[k];
  }
  if (c.max !== undefined || c.min !== undefined) {
    const n = typeof v === "number" ? v : typeof v === "string" && DECIMAL.test(v) ? Number(v) : Number.NaN;
    if (!Number.isFinite(n)) return `parameter ${c.param} must be a number`;
    if (c.max !== undefined && n > c.max) return `${c.param} ${n} exceeds max ${c.max}`;
    if (c.min !== undefined && n < c.min) return `${c.param} ${n} is below min ${c.min}`;
  }
  if (c.in !== undefined || c.notIn !== undefined || c.pattern !== undefined) {
    if (typeof v !== "string" && typeof v !== "number" && typeof v !== "boolean") {
      return `parameter ${c.param} must be a single value`;
    }
    const text = String(v);
    if (c.in !== undefined && !c.in.has(text)) return `${c.param} ${clip(text)} is not in ${c.inText}`;
    if (c.notIn?.has(text)) return `${c.param} ${clip(text)} is one of the refused values ${c.notInText}`;
    if (c.pattern !== undefined && !c.pattern.match(text)) {
      return `${c.param} ${clip(text)} does not match pattern "${c.pattern.source}"`;
    }
  }
  return undefined;
}

/** Why a call needs a person for each call: the rule that says so. */
export interface ApprovalNeed {
  rule: string;
  reason: string;
}

/**
 * Whether a call needs a person's approval each time (`require_approval`). Pure. A rule covers the
 * call when one of its action globs matches, the agent is covered (directly or by role), and every
 * `when` check is met; a parameter the call does not have counts as met, so leaving out `amount`
 * cannot avoid the rule for large amounts.
 */
export function approvalRequired(project: CompiledProject, call: Call): ApprovalNeed | undefined {
  if (project.requireApproval.length === 0) return undefined;
  const roles = project.agentRoles.get(call.agent) ?? new Set<string>();
  for (const r of project.requireApproval) {
    if (!matchesAny(r.actions, call.action)) continue;
    if (r.agents !== undefined || r.roles !== undefined) {
      let covered = r.agents?.has(call.agent) ?? false;
      if (!covered && r.roles !== undefined) for (const role of roles) if (r.roles.has(role)) covered = true;
      if (!covered) continue;
    }
    const met: string[] = [];
    let all = true;
    for (const c of r.when) {
      const v = paramAt(c, call.params);
      if (!conditionMet(c, v)) {
        all = false;
        break;
      }
      met.push(
        v === undefined
          ? `${c.param} not given`
          : `${c.param} ${typeof v === "object" ? "(not a single value)" : clip(String(v), 64)}`,
      );
    }
    if (!all) continue;
    return {
      rule: r.id,
      reason: `a person must approve each ${call.action} call${met.length ? ` with ${met.join(", ")}` : ""} (require_approval ${r.id} of ${project.name})`,
    };
  }
  return undefined;
}

function paramAt(c: CompiledConstraint, params: Record<string, unknown> | undefined): unknown {
  let v: unknown = params;
  for (const k of c.path) {
    if (v === null || typeof v !== "object" || Array.isArray(v) || !Object.hasOwn(v, k)) return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return v;
}

/**
 * Whether a `when` check is met. A value that is missing or cannot be checked (not a number for
 * min/max, not a single value for in/not_in/pattern) counts as met: a rule fails closed.
 */
function conditionMet(c: CompiledConstraint, v: unknown): boolean {
  if (v === undefined) return true;
  if (c.max !== undefined || c.min !== undefined) {
    const n = typeof v === "number" ? v : typeof v === "string" && DECIMAL.test(v) ? Number(v) : Number.NaN;
    if (!Number.isFinite(n)) return true;
    if (c.max !== undefined && n > c.max) return false;
    if (c.min !== undefined && n < c.min) return false;
  }
  if (typeof v !== "string" && typeof v !== "number" && typeof v !== "boolean") return true;
  const text = String(v);
  if (c.in !== undefined && !c.in.has(text)) return false;
  if (c.notIn?.has(text)) return false;
  if (c.pattern !== undefined && !c.pattern.match(text)) return false;
  return true;
}

/** Keeps agent-supplied text in reasons short. */
export function clip(s: string, max = 200): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}
