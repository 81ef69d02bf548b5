import type { CompiledProject, Decision } from "../policy/index.js";
import { err, ok, type Result } from "../result.js";
import { valueAtPath } from "./params.js";
import { pathSegment } from "./path-params.js";
import type { Operation, ProviderSpec } from "./spec.js";

/**
 * The checks of a provider call before anything is decided, and the operation-group default the
 * policy asks when no grant speaks. Pure: problems are values.
 */

/** The provider's spec and the operation a call names, or why there is none. */
export function findOperation(
  providers: ReadonlyMap<string, ProviderSpec>,
  provider: string,
  operation: string,
): Result<{ spec: ProviderSpec; op: Operation }> {
  const spec = providers.get(provider);
  if (!spec) return err(`no provider '${provider}' (known: ${[...providers.keys()].join(", ") || "none"})`);
  const op = spec.operations.get(operation);
  if (!op)
    return err(
      `provider ${provider} has no operation '${operation}' (it has ${[...spec.operations.keys()].join(", ")})`,
    );
  return ok({ spec, op });
}

/** A path parameter that cannot be what it stands for, and why (for the agent and the audit line). */
export interface PathParamProblem {
  param: string;
  problem: string;
}

/**
 * The call's params with each path parameter as the one segment it fills in (a string), or the
 * first path parameter that cannot be one: a dot segment, a separator or a control character,
 * however encoded, would change the path sent upstream (see path-params.ts).
 */
export function pathParamsOf(
  op: Pick<Operation, "pathParams" | "endpoint" | "action" | "resource">,
  params: Record<string, unknown>,
): Result<Record<string, unknown>, PathParamProblem> {
  const out = { ...params };
  for (const p of op.pathParams) {
    const v = params[p];
    if (v === undefined || v === null || v === "")
      return err({ param: p, problem: `params.${p}: is required (it is part of the path)` });
    const seg = pathSegment(v);
    if (!seg.ok)
      return err({ param: p, problem: `params.${p}: ${seg.error} (it is a segment of ${op.endpoint})` });
    out[p] = seg.value;
  }
  // Other params the spec puts into the action or resource the policy decides on: the same
  // rule, so that no value can add path segments (or a NUL) to what the policy sees.
  for (const m of `${op.action} ${op.resource}`.matchAll(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g)) {
    const p = m[1]!;
    if (op.pathParams.includes(p) || params[p] === undefined) continue;
    const seg = pathSegment(params[p]);
    if (!seg.ok)
      return err({
        param: p,
        problem: `params.${p}: ${seg.error} (the policy sees it in the action or resource)`,
      });
  }
  return ok(out);
}

const TYPE_OK: Record<string, (v: unknown) => boolean> = {
  string: (v) => typeof v === "string",
  integer: (v) =>
    (typeof v === "number" && Number.isInteger(v)) || (typeof v === "string" && /^-?\d+$/.test(v)),
  number: (v) =>
    (typeof v === "number" && Number.isFinite(v)) || (typeof v === "string" && /^-?\d+(\.\d+)?$/.test(v)),
  boolean: (v) => typeof v === "boolean" || v === "true" || v === "false",
  object: (v) => v !== null && typeof v === "object" && !Array.isArray(v),
  array: (v) => Array.isArray(v),
};

/** What is wrong with the params against the operation's declared ones: missing or mistyped (empty when nothing). */
export function paramProblems(op: Pick<Operation, "params">, params: Record<string, unknown>): string[] {
  const problems: string[] = [];
  for (const [k, d] of Object.entries(op.params)) {
    const v = valueAtPath(params, k);
    if (v === undefined) {
      if (d.required) problems.push(`params.${k}: is required`);
    } else if (!TYPE_OK[d.type]!(v))
      problems.push(`params.${k}: must be ${d.type === "integer" ? "an integer" : `a ${d.type}`}`);
  }
  return problems;
}

/** The amount a money-moving call moves, in minor units, or undefined when it is not a whole number. */
export function amountOf(
  amount: NonNullable<Operation["amount"]>,
  params: Record<string, unknown>,
): { amount: number | undefined; currency: string } {
  const raw = valueAtPath(params, amount.field);
  const n = typeof raw === "string" && /^\d+$/.test(raw) ? Number(raw) : raw;
  const currency = (
    amount.currency ?? String(valueAtPath(params, amount.currencyField ?? "") ?? "")
  ).toUpperCase();
  return { amount: typeof n === "number" && Number.isSafeInteger(n) && n >= 0 ? n : undefined, currency };
}

/** The operation-group default, asked when no grant speaks for the call. */
/**
 * Whether the operation's group allows it for the agent by default: its project enables the
 * provider (`providers:`), the group's default is allow, and the agent holds one of its roles if
 * it names any.
 */
export function groupAllows(
  spec: ProviderSpec,
  op: Operation,
  project: CompiledProject,
  agent: string,
): boolean {
  if (!project.document.providers.includes(spec.name)) return false;
  const g = spec.groups.get(op.group);
  const roles = project.agentRoles.get(agent);
  return g?.default === "allow" && (g.roles === undefined || g.roles.some((r) => roles?.has(r) ?? false));
}

export function groupDefault(spec: ProviderSpec, op: Operation, agent: string) {
  return (d: Decision & { decision: "DENY" }, project: CompiledProject): Decision | undefined => {
    if (!project.document.providers.includes(spec.name)) return undefined;
    const g = spec.groups.get(op.group);
    if (groupAllows(spec, op, project, agent))
      return {
        decision: "ALLOW",
        reason: `allowed by the ${spec.name} operation group ${op.group} (default allow in ${project.name})`,
        grantId: `${spec.name}:${op.group}`,
        expiresAt: undefined,
        approvedBy: undefined,
        revision: project.revision,
      };
    return {
      decision: "DENY",
      code: "op_group_denied",
      reason:
        g?.default === "allow"
          ? `the ${spec.name} operation group ${op.group} is allowed only for roles ${g.roles?.join(", ")}; agent ${agent} holds none, and no grant allows ${op.action}`
          : `the ${spec.name} operation group ${op.group} is denied by default; no grant allows ${op.action} for ${project.name}`,
      grantId: undefined,
      revision: d.revision,
    };
  };
}
