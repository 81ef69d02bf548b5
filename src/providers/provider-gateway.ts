import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { AgentIdentity } from "../agents/token-service.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { Butler } from "../butler/butler-service.js";
import type { Clock } from "../clock.js";
import { AppError } from "../errors.js";
import type { AuthorizeResult, Gateway } from "../gateway/gateway-service.js";
import type { OneShots } from "../grants/one-shot.js";
import type { Logger } from "../logger.js";
import type { CompiledProject, Decision } from "../policy/index.js";
import type { BudgetDef } from "../policy/types.js";
import type { FileIssue } from "../yaml-file.js";
import type { Budgets } from "./budgets.js";
import { formEncode, unstorableAt, valueAtPath } from "./params.js";
import { checkUpstreamUrl, pathSegment } from "./path-params.js";
import { type Operation, type ProviderSpec, parseProviderFile } from "./spec.js";
import { callUpstream, type UpstreamAnswer, type UpstreamError } from "./upstream.js";
import type { WebhookEvents } from "./webhook-events.js";
import { verifyWebhook } from "./webhooks.js";

/** The providers of a directory, parsed; files with problems are reported, not loaded. */
export interface ProviderSet {
  providers: Map<string, ProviderSpec>;
  failures: { file: string; issues: FileIssue[] }[];
}

export async function loadProviders(dir: string): Promise<ProviderSet> {
  const providers = new Map<string, ProviderSpec>();
  const failures: ProviderSet["failures"] = [];
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => /\.ya?ml$/.test(n)).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { providers, failures };
    throw e;
  }
  for (const n of names) {
    const file = join(dir, n);
    const r = parseProviderFile({ file, text: await readFile(file, "utf8") });
    if (!r.ok) failures.push({ file, issues: r.error });
    else if (providers.has(r.value.name))
      failures.push({
        file,
        issues: [
          { file, line: 1, col: 1, path: "name", message: `provider '${r.value.name}' is defined twice` },
        ],
      });
    else providers.set(r.value.name, r.value);
  }
  return { providers, failures };
}

/** A call through the gateway to a provider. */
export interface ProviderCall {
  provider: string;
  operation: string;
  params: Record<string, unknown>;
  /** The agent's own Idempotency-Key, passed on namespaced to the agent. */
  idempotencyKey?: string | undefined;
  /** Accept header to pass on. */
  accept?: string | undefined;
  /** Why a call is made when no agent asked (a webhook reaction); recorded with the decision. */
  via?: string | undefined;
  /** The agent's session (X-Butler-Session), for per-session budgets. */
  session?: string | undefined;
  /** Why the agent makes the call (X-Butler-Reason), shown to the person when it needs approval. */
  reason?: string | undefined;
}

/** What the agent gets back. */
export interface ProviderAnswer {
  status: number;
  contentType: string | undefined;
  body: Buffer;
  /** The audit event of the decision. */
  eventId: string;
}

export interface ProviderGatewayDeps {
  providers: ProviderSet;
  gateway: Pick<Gateway, "authorize">;
  audit: Pick<AuditLog, "append">;
  clock: Clock;
  log: Logger;
  /** The credential of that name (environment variable, then the vault), or undefined. */
  credential: (name: string) => Promise<string | undefined>;
  /** Base URLs replacing the specs' (BUTLER_PROVIDER_URLS: local stand-ins, regional endpoints). */
  baseUrls: Readonly<Record<string, string>>;
  /** Spending limits of money-moving calls. */
  budgets: Pick<Budgets, "reserve" | "release">;
  /** A project's budgets, from the policy in force. */
  projectBudgets: (project: string) => readonly BudgetDef[];
  /** Files the one-shot request for a call that needs a person (approval_required). */
  butler: Pick<Butler, "submit">;
  /** Gives a single-use grant back when its call did not go out. */
  oneShots: Pick<OneShots, "release">;
  /** Provider webhook events, each processed once (claimed with its audit line). */
  webhookEvents: Pick<WebhookEvents, "claim" | "reacted">;
  /** The HTTP client (callUpstream; tests may pass another). */
  upstream?: typeof callUpstream;
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

const fill = (template: string, params: Record<string, unknown>, encode: boolean) =>
  template.replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, k: string) => {
    const v = String(params[k] ?? "");
    return encode ? encodeURIComponent(v) : v;
  });

/**
 * What the audit line of a proxied call to an unknown provider names: fixed text, never the
 * agent's (upper case, so it can be no provider's name or service).
 */
export const UNKNOWN_PROVIDER = { action: "UNKNOWN:unknown", resource: "UNKNOWN" } as const;

/** A raw (still percent-encoded) path as printable ASCII: any other character percent-encoded. */
function printable(s: string): string {
  return s
    .toWellFormed()
    .replace(/[^\x21-\x7e]/gu, (ch) =>
      [...Buffer.from(ch, "utf8")].map((b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`).join(""),
    );
}

const REDACTED = Buffer.from("[redacted]");

/**
 * The upstream's answer without the credential Butler sent it (as sent, in Basic auth's base64 or
 * JSON-escaped): an upstream that echoes it must not hand it to the agent, who never has it.
 */
function withoutCredential(body: Buffer, credential: string): Buffer {
  let out = body;
  const forms = new Set([
    credential,
    Buffer.from(credential).toString("base64"),
    JSON.stringify(credential).slice(1, -1),
  ]);
  for (const form of forms) {
    const needle = Buffer.from(form);
    // As short as ordinary text: replacing it would corrupt answers (and it is warned about at start).
    if (needle.length < 8) continue;
    let at = out.indexOf(needle);
    if (at < 0) continue;
    const parts: Buffer[] = [];
    let from = 0;
    for (; at >= 0; at = out.indexOf(needle, from)) {
      parts.push(out.subarray(from, at), REDACTED);
      from = at + needle.length;
    }
    parts.push(out.subarray(from));
    out = Buffer.concat(parts);
  }
  return out;
}

/** A short description of an upstream answer for the audit log: never its data. */
function summary(body: Buffer, contentType: string | undefined): Record<string, unknown> | undefined {
  if (!contentType?.includes("json") || body.length > 1_000_000) return undefined;
  try {
    const j = JSON.parse(body.toString("utf8")) as Record<string, unknown>;
    if (j === null || typeof j !== "object") return undefined;
    const out: Record<string, unknown> = {};
    if (typeof j.object === "string") out.object = j.object;
    if (typeof j.id === "string" && j.id.length <= 64) out.id = j.id;
    if (Array.isArray(j.data)) out.count = j.data.length;
    const e = j.error as Record<string, unknown> | undefined;
    if (e && typeof e === "object") {
      if (typeof e.type === "string") out.error_type = e.type.slice(0, 64);
      if (typeof e.code === "string") out.error_code = e.code.slice(0, 64);
    }
    return out;
  } catch {
    return undefined;
  }
}

/**
 * The gateway in the call path. Every call, by operation name or through the transparent proxy,
 * goes through one pipeline: check the params against the operation, decide with the policy
 * (operation-group defaults when no grant speaks, parameter constraints from the grants), call
 * upstream with the provider's credential (never the agent's token), and record the outcome.
 */
/** An agent's own idempotency key, namespaced to the agent so that agents cannot collide. */
function agentKey(identity: AgentIdentity, key: string | undefined): string | undefined {
  if (!key) return undefined;
  return `butler-${createHash("sha256").update(`${identity.project}/${identity.agent}`).digest("hex").slice(0, 16)}-${key}`;
}

export function createProviderGateway(deps: ProviderGatewayDeps) {
  const { providers, clock, log } = deps;
  const upstream = deps.upstream ?? callUpstream;

  function find(provider: string, operation: string): { spec: ProviderSpec; op: Operation } {
    const spec = providers.providers.get(provider);
    if (!spec)
      throw new AppError(
        "NOT_FOUND",
        `no provider '${provider}' (known: ${[...providers.providers.keys()].join(", ") || "none"})`,
      );
    const op = spec.operations.get(operation);
    if (!op)
      throw new AppError(
        "NOT_FOUND",
        `provider ${provider} has no operation '${operation}' (it has ${[...spec.operations.keys()].join(", ")})`,
      );
    return { spec, op };
  }

  /**
   * The call's params with each path parameter as the one segment it fills in (a string), or the
   * first path parameter that cannot be one: a dot segment, a separator or a control character,
   * however encoded, would change the path sent upstream (see path-params.ts).
   */
  function pathParamsOf(
    op: Operation,
    params: Record<string, unknown>,
  ): { ok: true; params: Record<string, unknown> } | { ok: false; param: string; problem: string } {
    const out = { ...params };
    for (const p of op.pathParams) {
      const v = params[p];
      if (v === undefined || v === null || v === "")
        return { ok: false, param: p, problem: `params.${p}: is required (it is part of the path)` };
      const seg = pathSegment(v);
      if (!seg.ok)
        return {
          ok: false,
          param: p,
          problem: `params.${p}: ${seg.error} (it is a segment of ${op.endpoint})`,
        };
      out[p] = seg.value;
    }
    // Other params the spec puts into the action or resource the policy decides on: the same
    // rule, so that no value can add path segments (or a NUL) to what the policy sees.
    for (const m of `${op.action} ${op.resource}`.matchAll(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g)) {
      const p = m[1]!;
      if (op.pathParams.includes(p) || params[p] === undefined) continue;
      const seg = pathSegment(params[p]);
      if (!seg.ok)
        return {
          ok: false,
          param: p,
          problem: `params.${p}: ${seg.error} (the policy sees it in the action or resource)`,
        };
    }
    return { ok: true, params: out };
  }

  function checkParams(op: Operation, params: Record<string, unknown>): void {
    const problems: string[] = [];
    for (const [k, d] of Object.entries(op.params)) {
      const v = valueAtPath(params, k);
      if (v === undefined) {
        if (d.required) problems.push(`params.${k}: is required`);
      } else if (!TYPE_OK[d.type]!(v))
        problems.push(`params.${k}: must be ${d.type === "integer" ? "an integer" : `a ${d.type}`}`);
    }
    if (problems.length) throw new AppError("INVALID_INPUT", `${op.name}: ${problems.join("; ")}`);
  }

  /** The operation-group default, asked when no grant speaks for the call. */
  function groupDefault(spec: ProviderSpec, op: Operation, agent: string) {
    return (d: Decision & { decision: "DENY" }, project: CompiledProject): Decision | undefined => {
      if (!project.document.providers.includes(spec.name)) return undefined;
      const g = spec.groups.get(op.group);
      const roles = project.agentRoles.get(agent);
      const allowed =
        g?.default === "allow" && (g.roles === undefined || g.roles.some((r) => roles?.has(r) ?? false));
      if (allowed)
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

  /** The seed's DENY line, as the agent sees it (403), with how to ask for access when a person could. */
  function denial(
    identity: AgentIdentity,
    action: string,
    resource: string,
    reason: string,
    eventId: string,
    code: string,
    requestAccess?: AuthorizeResult["request_access"],
    extra: Record<string, unknown> = {},
  ): ProviderAnswer {
    const body = {
      ts: clock.now().toISOString(),
      agent: identity.agent,
      project: identity.project,
      action,
      resource,
      decision: "DENY",
      reason,
      http_status: 403,
      event_id: eventId,
      code,
      ...(requestAccess ? { request_access: requestAccess } : {}),
      ...extra,
      // Provider SDKs (stripe-node and others) raise an error only for a body with `error`: without
      // it, an unmodified SDK would take the DENY for the provider's answer.
      error: {
        type: "butler_denied",
        code,
        message: reason,
        event_id: eventId,
        ...(typeof extra.approval_required === "object" && extra.approval_required !== null
          ? { request_id: (extra.approval_required as { request_id?: string }).request_id }
          : {}),
      },
    };
    return { status: 403, contentType: "application/json", body: Buffer.from(JSON.stringify(body)), eventId };
  }

  /** A refusal by a step after the policy decision (or of an unknown path): audited, then the DENY line. */
  async function refuse(
    identity: AgentIdentity,
    type: "budget.exceeded" | "gateway.denied",
    action: string,
    resource: string,
    reason: string,
    details: Record<string, unknown>,
  ): Promise<ProviderAnswer> {
    const line = await deps.audit.append({
      type,
      agent: identity.agent,
      project: identity.project,
      action,
      resource,
      decision: "DENY",
      reason,
      httpStatus: 403,
      details,
    });
    return denial(
      identity,
      action,
      resource,
      reason,
      line.event_id,
      type === "budget.exceeded" ? "budget_exceeded" : String(details.deny_code ?? "denied"),
    );
  }

  /**
   * A path parameter that would change the path: refused before anything is decided, and audited
   * as a denial (an agent trying to step out of the operation's path is worth a line). The line
   * names the operation's templates, never the agent's value.
   */
  async function refusePath(
    identity: AgentIdentity,
    spec: ProviderSpec,
    op: Operation,
    param: string,
    problem: string,
    via: string | undefined,
  ): Promise<never> {
    const line = await deps.audit.append({
      type: "gateway.denied",
      agent: identity.agent,
      project: identity.project,
      action: op.action,
      resource: op.resource,
      decision: "DENY",
      reason: problem,
      httpStatus: 400,
      details: {
        deny_code: "invalid_path_param",
        provider: spec.name,
        operation: op.name,
        param,
        token_id: identity.tokenId,
        ...(via ? { via } : {}),
      },
    });
    throw new AppError("INVALID_INPUT", `${op.name}: ${problem}`, { event_id: line.event_id });
  }

  async function call(identity: AgentIdentity, given: ProviderCall): Promise<ProviderAnswer> {
    const { spec, op } = find(given.provider, given.operation);
    // Params may be stored (a one-shot request keeps the call's params, budgets its currency):
    // text the database cannot hold is the caller's error, before anything is decided.
    const unstorable = unstorableAt(given.params);
    if (unstorable)
      throw new AppError(
        "INVALID_INPUT",
        `${op.name}: ${unstorable}: must be text without NUL characters or unpaired surrogates`,
      );
    const checked = pathParamsOf(op, given.params);
    if (!checked.ok) return refusePath(identity, spec, op, checked.param, checked.problem, given.via);
    // Path parameters are part of the call as the strings they put in the path: the decision,
    // the one-shot hash and the request all see the same value.
    const c: ProviderCall = { ...given, params: checked.params };
    checkParams(op, c.params);
    const action = fill(op.action, c.params, false);
    const resource = fill(op.resource, c.params, false);
    const d = await deps.gateway.authorize(
      identity,
      { action, resource, params: c.params },
      {
        fallback: groupDefault(spec, op, identity.agent),
        details: { provider: spec.name, operation: op.name, ...(c.via ? { via: c.via } : {}) },
        eachCall:
          op.approval === "each_call"
            ? `a person must approve each call of ${spec.name} ${op.name} (approval: each_call in its spec)`
            : undefined,
      },
    );
    if (d.decision === "DENY") {
      if (d.code === "approval_required") return askForApproval(identity, c, action, resource, d);
      return denial(identity, action, resource, d.reason, d.event_id, d.code ?? "denied", d.request_access);
    }
    const bound = { action, resource, params: c.params };
    // A one-shot approval that did not lead to a call is given back (see OneShots.release).
    const giveBack = (why: string) =>
      d.one_shot ? deps.oneShots.release(identity, bound, d.one_shot.grant_id, why) : Promise.resolve();

    // Budgets: money-moving operations reserve their amount before the call, under a lock.
    let reservation: number | undefined;
    const budgets = op.amount ? deps.projectBudgets(identity.project) : [];
    if (op.amount && budgets.length > 0) {
      const raw = valueAtPath(c.params, op.amount.field);
      const amount = typeof raw === "string" && /^\d+$/.test(raw) ? Number(raw) : raw;
      const currency = (
        op.amount.currency ?? String(valueAtPath(c.params, op.amount.currencyField ?? "") ?? "")
      ).toUpperCase();
      const overBudget = (reason: string, budget: string | undefined) =>
        refuse(identity, "budget.exceeded", action, resource, reason, {
          provider: spec.name,
          operation: op.name,
          budget,
          decision_event_id: d.event_id,
        });
      if (typeof amount !== "number" || !Number.isSafeInteger(amount) || amount < 0) {
        await giveBack("the call was refused before it was sent: its amount is not a whole number");
        return overBudget(
          `${op.name} moves money and ${identity.project} has budgets: params.${op.amount.field} must be a whole number of minor units`,
          undefined,
        );
      }
      const r = await deps.budgets.reserve(budgets, {
        project: identity.project,
        agent: identity.agent,
        currency,
        amount,
        session: c.session,
        eventId: d.event_id,
        idempotencyKey: agentKey(identity, c.idempotencyKey),
      });
      if (!r.ok) {
        await giveBack(`the call was refused by a budget before it was sent: ${r.reason}`);
        return overBudget(r.reason, r.budget);
      }
      reservation = r.id;
    }

    const base = (deps.baseUrls[spec.name] ?? spec.baseUrl).replace(/\/+$/, "");
    const bodyParams = Object.fromEntries(
      Object.entries(c.params).filter(([k]) => !op.pathParams.includes(k)),
    );
    let url = `${base}${fill(op.endpoint, c.params, true)}`;
    const headers: Record<string, string> = {
      "user-agent": "butler-gateway",
      accept: c.accept ?? "application/json",
    };
    let body: string | undefined;
    if (op.encoding === "query") {
      const q = formEncode(bodyParams);
      if (q) url += `?${q}`;
    } else if (op.encoding === "form") {
      body = formEncode(bodyParams);
      headers["content-type"] = "application/x-www-form-urlencoded";
    } else {
      body = JSON.stringify(bodyParams);
      headers["content-type"] = "application/json";
    }
    // Writes carry an idempotency key: the agent's own (namespaced to the agent, so two agents
    // cannot collide or replay each other's), else one derived from the decision's audit event.
    let idempotencyKey: string | undefined;
    if (op.method !== "GET") {
      // A call approved one-shot is always sent with the key of the call that was approved, so
      // approving and then retrying can never execute it twice.
      idempotencyKey =
        d.one_shot?.idempotency_key ?? agentKey(identity, c.idempotencyKey) ?? `butler-${d.event_id}`;
      headers["idempotency-key"] = idempotencyKey;
    }
    // The one check of what is sent (fail closed): the provider's origin, and exactly the
    // operation's path with each placeholder filled by the call's own value as one segment.
    const target = new URL(url);
    const sane = checkUpstreamUrl(target, base, op, c.params);
    if (!sane.ok) {
      if (reservation !== undefined) await deps.budgets.release(reservation);
      await giveBack(`the call was not sent: ${sane.error}`);
      await deps.audit.append({
        type: "provider.failed",
        agent: identity.agent,
        project: identity.project,
        action,
        resource,
        reason: `not sent: ${sane.error}`,
        httpStatus: 400,
        details: { provider: spec.name, operation: op.name, decision_event_id: d.event_id },
      });
      throw new AppError("INVALID_INPUT", `${op.name}: the call was not sent: ${sane.error}`, {
        event_id: d.event_id,
      });
    }
    const credential = await deps.credential(spec.auth.credential);
    if (!credential) {
      if (reservation !== undefined) await deps.budgets.release(reservation);
      await giveBack("the call was not sent: the provider has no credential");
      await deps.audit.append({
        type: "provider.failed",
        agent: identity.agent,
        project: identity.project,
        action,
        resource,
        reason: `no credential ${spec.auth.credential}`,
        details: { provider: spec.name, operation: op.name, decision_event_id: d.event_id },
      });
      throw new AppError(
        "UNAVAILABLE",
        `provider ${spec.name} has no credential: set the environment variable ${spec.auth.credential} (or ${spec.auth.credential}_FILE) on the server`,
      );
    }
    headers[spec.auth.header.toLowerCase()] =
      spec.auth.type === "header"
        ? credential
        : spec.auth.type === "basic"
          ? `Basic ${Buffer.from(credential).toString("base64")}`
          : `${spec.auth.prefix} ${credential}`;

    const started = process.hrtime.bigint();
    // Retried once on a connection error or 502/503/504, only when sending twice is harmless.
    const retriable = op.idempotent || idempotencyKey !== undefined;
    let attempts = 0;
    let failure: { status: 502 | 504; reason: string } | undefined;
    let res: UpstreamAnswer | undefined;
    while (attempts < (retriable ? 2 : 1)) {
      attempts++;
      failure = undefined;
      try {
        res = await upstream(target, { method: op.method, headers, body, timeoutMs: op.timeoutMs });
        if (res.status >= 500) {
          failure = { status: 502, reason: `${spec.name} answered HTTP ${res.status}` };
          if ([502, 503, 504].includes(res.status)) continue;
        }
        break;
      } catch (e) {
        const err = e as UpstreamError;
        res = undefined;
        if (err.kind === "timeout") {
          failure = { status: 504, reason: `${spec.name} did not answer within ${op.timeoutMs} ms` };
          break;
        }
        failure = {
          status: 502,
          reason:
            err.kind === "too_large"
              ? `${spec.name}: ${err.message}`
              : `could not reach ${spec.name}: ${err.message}`,
        };
        if (err.kind === "too_large") break;
      }
    }
    const latencyMs = Number(process.hrtime.bigint() - started) / 1e6;
    // The money did not move: the budget gets it back.
    if (reservation !== undefined && (failure || !res || res.status >= 400))
      await deps.budgets.release(reservation);
    if (failure) await giveBack(`${failure.reason}; the retry is sent with the same idempotency key`);
    const contentType = res?.headers["content-type"];
    await deps.audit.append({
      type: failure ? "provider.failed" : "provider.called",
      agent: identity.agent,
      project: identity.project,
      action,
      resource,
      reason: failure?.reason ?? null,
      httpStatus: failure ? failure.status : (res?.status ?? null),
      details: {
        provider: spec.name,
        operation: op.name,
        decision_event_id: d.event_id,
        upstream_status: res?.status ?? null,
        latency_ms: Math.round(latencyMs * 10) / 10,
        attempts,
        idempotency_key: idempotencyKey,
        summary: res ? summary(res.body, contentType) : undefined,
      },
    });
    if (failure) {
      log.warn({ provider: spec.name, operation: op.name, reason: failure.reason }, "provider call failed");
      return {
        status: failure.status,
        contentType: "application/json",
        body: Buffer.from(
          JSON.stringify({
            error: {
              code: failure.status === 504 ? "UPSTREAM_TIMEOUT" : "UPSTREAM_FAILED",
              message: failure.reason,
            },
            event_id: d.event_id,
          }),
        ),
        eventId: d.event_id,
      };
    }
    return {
      status: res!.status,
      contentType,
      body: withoutCredential(res!.body, credential),
      eventId: d.event_id,
    };
  }

  /**
   * A call that needs a person: the one-shot request for exactly this call is filed at once (or
   * the pending one returned), and the agent is told where to follow it. After approval, the
   * identical call goes through once, with this call's idempotency key.
   */
  async function askForApproval(
    identity: AgentIdentity,
    c: ProviderCall,
    action: string,
    resource: string,
    d: AuthorizeResult,
  ): Promise<ProviderAnswer> {
    let approval: Record<string, unknown>;
    try {
      const filed = await deps.butler.submit(
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
    return denial(identity, action, resource, d.reason, d.event_id, "approval_required", undefined, {
      approval_required: approval,
    });
  }

  /**
   * The operation a proxied request means, by method and path; undefined when none. `rawPath` is
   * the path as the client sent it, still percent-encoded: literal segments must match as written,
   * and each path parameter is one raw segment, decoded once here (an encoded `/` stays inside
   * its parameter, where `call` refuses it, instead of splitting the path).
   */
  function route(
    provider: string,
    method: string,
    rawPath: string,
  ): { op: Operation; pathParams: Record<string, string> } | undefined {
    const spec = providers.providers.get(provider);
    if (!spec) return undefined;
    for (const op of spec.operations.values()) {
      if (op.method !== method) continue;
      const m = op.pathPattern.exec(rawPath);
      if (!m) continue;
      const pathParams: Record<string, string> = {};
      op.pathParams.forEach((p, i) => {
        try {
          pathParams[p] = decodeURIComponent(m[i + 1]!);
        } catch {
          throw new AppError("INVALID_INPUT", `params.${p}: the path segment is not valid percent-encoding`);
        }
      });
      return { op, pathParams };
    }
    return undefined;
  }

  /**
   * A proxied request no operation answers: denied and audited, never forwarded. The agent chose
   * the provider segment and the path: an unknown provider is recorded under a fixed placeholder
   * (what was asked only percent-encoded, in its own field), a known provider's unknown path in
   * its still-encoded form.
   */
  async function denyUnknown(
    identity: AgentIdentity,
    provider: string,
    method: string,
    rawPath: string,
  ): Promise<ProviderAnswer> {
    const spec = providers.providers.get(provider);
    const known = [...providers.providers.keys()].join(", ") || "none";
    if (!spec)
      return refuse(
        identity,
        "gateway.denied",
        UNKNOWN_PROVIDER.action,
        UNKNOWN_PROVIDER.resource,
        `no provider of that name (known: ${known}); the gateway forwards only to the providers it has specs for`,
        {
          deny_code: "unknown_provider",
          requested_provider: encodeURIComponent(provider.toWellFormed()).slice(0, 128),
          method,
          token_id: identity.tokenId,
        },
      );
    const path = printable(rawPath).slice(0, 2000);
    return refuse(
      identity,
      "gateway.denied",
      `${spec.service}:unknown`,
      `${spec.name}${path}`,
      `${spec.name} has no operation for ${method} ${path}; the gateway forwards only the calls its spec describes`,
      { deny_code: "unknown_operation", provider: spec.name, method, token_id: identity.tokenId },
    );
  }

  /**
   * An inbound webhook: the signature is checked with the provider's scheme before anything
   * else; a good one is recorded in the audit chain, a bad one is refused (and audited).
   */
  async function webhook(
    provider: string,
    headers: Record<string, string | string[] | undefined>,
    body: string,
  ): Promise<{
    event_id: string | null;
    event_type: string | null;
    /** A replay of an event already received: nothing ran again (or, resumed, its unfinished reactions did). */
    duplicate: boolean;
    reactions: { name: string; status: number }[];
  }> {
    const spec = providers.providers.get(provider);
    if (!spec?.webhooks) throw new AppError("NOT_FOUND", `provider '${provider}' takes no webhooks`);
    const secret = await deps.credential(spec.webhooks.secret);
    if (!secret)
      throw new AppError(
        "UNAVAILABLE",
        `set ${spec.webhooks.secret} on the server to receive ${provider} webhooks`,
      );
    const checked = verifyWebhook(
      spec.webhooks.scheme,
      secret,
      headers,
      body,
      clock.now().getTime(),
      spec.webhooks.toleranceSeconds,
    );
    if (!checked.ok) {
      await deps.audit.append({ type: "webhook.rejected", reason: checked.error, details: { provider } });
      throw new AppError("INVALID_INPUT", `webhook refused: ${checked.error}`);
    }
    let event: Record<string, unknown> = {};
    try {
      const j = JSON.parse(body) as unknown;
      if (j && typeof j === "object" && !Array.isArray(j)) event = j as Record<string, unknown>;
    } catch {
      /* a signed body that is not JSON is still recorded */
    }
    const str = (v: unknown) => (typeof v === "string" ? v.slice(0, 128) : null);
    const data = (event.data ?? {}) as Record<string, unknown>;
    const out = {
      event_id: str(event.id) ?? str(data.id),
      event_type: str(event.type) ?? str(event.event),
    };
    const bodySha = createHash("sha256").update(body).digest("hex");
    // Each event is processed once. Its key: the provider's own event id when the signed body has
    // one at the top level (Stripe's evt_…, the same on every retry); otherwise the body's hash
    // (Revolut's events have no id of their own, and data.id is the transaction's, shared by its
    // events; a retry sends the same body).
    const key =
      typeof event.id === "string" && /^[\x21-\x7e]{1,255}$/.test(event.id)
        ? `id:${event.id}`
        : typeof event.id === "string" && event.id.length > 0
          ? `id-sha256:${createHash("sha256").update(event.id).digest("hex")}`
          : `sha256:${bodySha}`;
    const reactionsFor = spec.webhooks.reactions.filter((r) => {
      if (out.event_type !== r.event) return false;
      if (r.field === undefined) return true;
      const v = valueAtPath(event, r.field);
      return r.in?.some((x) => String(x) === String(v)) ?? false;
    });
    const claim = await deps.webhookEvents.claim({
      provider,
      key,
      hasReactions: reactionsFor.length > 0,
      // event_id is the audit line's own: the provider's ids are recorded under their own names.
      details: {
        provider,
        provider_event_id: out.event_id,
        provider_event_type: out.event_type,
        body_sha256: bodySha,
      },
    });
    // A replay (within the signature's tolerance, or the provider's own retry): answered 200 so
    // that the provider stops, recorded as a duplicate, and nothing runs again.
    if (claim.status === "duplicate") return { ...out, duplicate: true, reactions: [] };
    if (claim.status === "new" && !claim.react) return { ...out, duplicate: false, reactions: [] };
    // Reactions go through the same pipeline as any agent's call, as the configured actor. Their
    // idempotency keys come from the event, so a run resumed after a crash cannot act twice.
    const first = claim.status === "resumed" ? (claim.firstEventId ?? claim.eventId) : claim.eventId;
    const eventDigest = createHash("sha256").update(`${provider}\n${key}`).digest("hex").slice(0, 32);
    const reactions: { name: string; status: number }[] = [];
    for (const r of reactionsFor) {
      const params: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(r.params)) {
        const m = typeof v === "string" ? /^\{([A-Za-z_][A-Za-z0-9_.]*)\}$/.exec(v) : null;
        params[k] = m ? valueAtPath(event, m[1]!) : v;
      }
      const actor = { agent: r.actor.agent, project: r.actor.project, tokenId: `webhook:${first}` };
      try {
        const a = await call(actor, {
          provider: spec.name,
          operation: r.operation,
          params,
          via: `reaction ${r.name}`,
          idempotencyKey: `webhook-${eventDigest}-${r.name}`,
        });
        reactions.push({ name: r.name, status: a.status });
      } catch (e) {
        log.warn({ err: e, reaction: r.name }, "webhook reaction failed");
        reactions.push({ name: r.name, status: e instanceof AppError ? 400 : 500 });
      }
    }
    await deps.webhookEvents.reacted(provider, key);
    return { ...out, duplicate: claim.status === "resumed", reactions };
  }

  return { call, route, denyUnknown, webhook, providers: providers.providers };
}

export type ProviderGateway = ReturnType<typeof createProviderGateway>;
