import type { AgentIdentity } from "../agents/token-service.js";
import { AppError } from "../errors.js";
import type { ProviderAnswer } from "./call-types.js";
import { type DenialDeps, refuse } from "./denials.js";
import type { Operation, ProviderSpec } from "./spec.js";

/**
 * What an audit line of a proxied call to an unknown provider names: fixed text, never the
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

/** Each spec's operations by method, made once per spec (specs are loaded once, never changed). */
const methods = new WeakMap<ProviderSpec, Map<string, Operation[]>>();

function byMethod(spec: ProviderSpec): Map<string, Operation[]> {
  let m = methods.get(spec);
  if (!m) {
    m = new Map();
    for (const op of spec.operations.values()) m.set(op.method, [...(m.get(op.method) ?? []), op]);
    methods.set(spec, m);
  }
  return m;
}

/**
 * The operation a proxied request means, by method and path; undefined when none. `rawPath` is
 * the path as the client sent it, still percent-encoded: literal segments must match as written,
 * and each path parameter is one raw segment, decoded once here (an encoded `/` stays inside
 * its parameter, where `call` refuses it, instead of splitting the path).
 */
export function routeProxied(
  providers: ReadonlyMap<string, ProviderSpec>,
  provider: string,
  method: string,
  rawPath: string,
): { op: Operation; pathParams: Record<string, string> } | undefined {
  const spec = providers.get(provider);
  if (!spec) return undefined;
  for (const op of byMethod(spec).get(method) ?? []) {
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
export function denyUnknown(
  deps: DenialDeps & { providers: ReadonlyMap<string, ProviderSpec> },
  identity: AgentIdentity,
  provider: string,
  method: string,
  rawPath: string,
): Promise<ProviderAnswer> {
  const spec = deps.providers.get(provider);
  const known = [...deps.providers.keys()].join(", ") || "none";
  if (!spec)
    return refuse(deps, identity, {
      type: "gateway.denied",
      ...UNKNOWN_PROVIDER,
      reason: `no provider of that name (known: ${known}); the gateway forwards only to the providers it has specs for`,
      details: {
        deny_code: "unknown_provider",
        requested_provider: encodeURIComponent(provider.toWellFormed()).slice(0, 128),
        method,
        token_id: identity.tokenId,
      },
    });
  const path = printable(rawPath).slice(0, 2000);
  return refuse(deps, identity, {
    type: "gateway.denied",
    action: `${spec.service}:unknown`,
    resource: `${spec.name}${path}`,
    reason: `${spec.name} has no operation for ${method} ${path}; the gateway forwards only the calls its spec describes`,
    details: { deny_code: "unknown_operation", provider: spec.name, method, token_id: identity.tokenId },
  });
}
