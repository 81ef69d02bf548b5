import { createHash } from "node:crypto";
import type { AgentIdentity } from "../agents/token-service.js";
import { err, ok, type Result } from "../result.js";
import { formEncode } from "./params.js";
import { checkUpstreamUrl } from "./path-params.js";
import type { Operation, ProviderSpec } from "./spec.js";

/**
 * The HTTP request a provider call becomes: spec, operation, params and credential in; method,
 * URL, headers and body out, or why it cannot be sent. Pure: no I/O, no clock.
 */

/** A template (`/v1/charges/{id}`, `stripe:charges:{id}`) with each placeholder filled from the params. */
export const fill = (template: string, params: Record<string, unknown>, encode: boolean): string =>
  template.replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, k: string) => {
    const v = String(params[k] ?? "");
    return encode ? encodeURIComponent(v) : v;
  });

/** An agent's own idempotency key, namespaced to the agent so that agents cannot collide. */
export function agentKey(identity: AgentIdentity, key: string | undefined): string | undefined {
  if (!key) return undefined;
  return `butler-${createHash("sha256").update(`${identity.project}/${identity.agent}`).digest("hex").slice(0, 16)}-${key}`;
}

/**
 * The idempotency key a write is sent with (reads carry none): the key of the call a one-shot
 * approval was given for (so approving and then retrying can never execute it twice), else the
 * agent's own (namespaced to the agent, so two agents cannot collide or replay each other's),
 * else one derived from the decision's audit event.
 */
export function writeKeyOf(
  op: Pick<Operation, "method">,
  identity: AgentIdentity,
  agentsKey: string | undefined,
  decision: { event_id: string; one_shot?: { idempotency_key: string | null } | undefined },
): string | undefined {
  if (op.method === "GET") return undefined;
  return decision.one_shot?.idempotency_key ?? agentKey(identity, agentsKey) ?? `butler-${decision.event_id}`;
}

/** What is needed to build the upstream request of one call. */
export interface UpstreamRequestInput {
  spec: Pick<ProviderSpec, "name" | "auth">;
  op: Pick<Operation, "method" | "endpoint" | "encoding" | "pathParams" | "pathPattern">;
  /** The call's params, path parameters already as the segments they fill in. */
  params: Record<string, unknown>;
  /** The base URL in force: the operator's (BUTLER_PROVIDER_URLS) or the spec's. */
  baseUrl: string;
  /** The agent's Accept header, passed on (default JSON). */
  accept: string | undefined;
  /** The key a write is sent with (see writeKeyOf); undefined for reads. */
  idempotencyKey: string | undefined;
  /** The provider's credential; undefined when the server has none. */
  credential: string | undefined;
}

/** A request ready to send. */
export interface UpstreamRequest {
  method: Operation["method"];
  url: URL;
  headers: Record<string, string>;
  body: string | undefined;
}

/** Why a call cannot be sent: checked in this order, so the URL's problem wins. */
export type UpstreamRequestProblem =
  | { kind: "unsafe_url"; message: string }
  | { kind: "no_credential"; credential: string };

/** The header that carries the credential, as the spec's auth scheme writes it. */
export function authHeader(auth: NonNullable<ProviderSpec["auth"]>, credential: string): [string, string] {
  const value =
    auth.type === "header"
      ? credential
      : auth.type === "basic"
        ? `Basic ${Buffer.from(credential).toString("base64")}`
        : `${auth.prefix} ${credential}`;
  return [auth.header.toLowerCase(), value];
}

/**
 * The request to send upstream. The params that are not path parameters go into the query, a
 * form body or a JSON body, by the operation's encoding. The URL is checked before anything is
 * sent (fail closed): the provider's origin, and exactly the operation's path with each
 * placeholder filled by the call's own value as one segment.
 */
export function buildUpstreamRequest(
  input: UpstreamRequestInput,
): Result<UpstreamRequest, UpstreamRequestProblem> {
  const { spec, op, params } = input;
  const base = input.baseUrl.replace(/\/+$/, "");
  const rest = Object.fromEntries(Object.entries(params).filter(([k]) => !op.pathParams.includes(k)));
  let url = `${base}${fill(op.endpoint, params, true)}`;
  const headers: Record<string, string> = {
    "user-agent": "butler-gateway",
    accept: input.accept ?? "application/json",
  };
  let body: string | undefined;
  if (op.encoding === "query") {
    const q = formEncode(rest);
    if (q) url += `?${q}`;
  } else if (op.encoding === "form") {
    body = formEncode(rest);
    headers["content-type"] = "application/x-www-form-urlencoded";
  } else {
    body = JSON.stringify(rest);
    headers["content-type"] = "application/json";
  }
  if (input.idempotencyKey !== undefined) headers["idempotency-key"] = input.idempotencyKey;
  if (!URL.canParse(url)) return err({ kind: "unsafe_url", message: "the provider's base URL is not a URL" });
  const target = new URL(url);
  const sane = checkUpstreamUrl(target, base, op, params);
  if (!sane.ok) return err({ kind: "unsafe_url", message: sane.error });
  // Every HTTP provider's spec has auth (only an MCP server's may have none).
  if (!input.credential || !spec.auth)
    return err({ kind: "no_credential", credential: spec.auth?.credential ?? "(none)" });
  const [name, value] = authHeader(spec.auth, input.credential);
  headers[name] = value;
  return ok({ method: op.method, url: target, headers, body });
}
