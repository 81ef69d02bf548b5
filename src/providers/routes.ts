import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import type { TokenService } from "../agents/token-service.js";
import { AppError } from "../errors.js";
import { requireAgent } from "../http/auth.js";
import { createFastify } from "../http/fastify.js";
import { rawBodies } from "../http/raw-body.js";
import type { RouteDoc } from "../http/route-doc.js";
import { paramsObject, parseInput, safeText } from "../http/validation.js";
import type { Logger } from "../logger.js";
import { nestPairs } from "./params.js";
import type { ProviderAnswer, ProviderGateway } from "./provider-gateway.js";

const CallBody = z.strictObject({
  params: paramsObject.optional(),
  /** Why the agent makes the call: shown to the person when the call needs approval. */
  reason: safeText(2000).optional(),
});
const CallParams = z.strictObject({
  provider: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, "must be a provider name such as stripe"),
  operation: z.string().regex(/^[a-z][a-z0-9_]{0,63}$/, "must be an operation name such as list_customers"),
});
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

const CALL_HEADERS = [
  {
    name: "Idempotency-Key",
    description: "Passed on to the provider; retries with the same key are one call",
  },
  {
    name: "X-Butler-Session",
    description: "The agent's session, for per-session budgets (1 to 128 printable ASCII)",
  },
  {
    name: "X-Butler-Reason",
    description:
      "Why the call is made, percent-encoded (encodeURIComponent): shown to the person when it needs approval",
  },
] as const;
const OPERATION_DOC: RouteDoc = {
  tag: "providers",
  summary: "Call a provider's operation by name, with JSON params; Butler holds the credential",
  description:
    "The provider's answer is passed through (with X-Butler-Event-Id); a call the policy denies, or one a person must approve, is 403 with a DENY body (`approval_required` when an access request was filed).",
  auth: ["agent"],
  params: CallParams,
  body: CallBody,
  optionalBody: true,
  headers: CALL_HEADERS,
};
const PROXY_DOC: RouteDoc = {
  tag: "providers",
  summary: "The transparent proxy for unmodified SDKs: the provider's own API under this path",
  description:
    "The method and path name the operation (an unknown one is denied and audited, never forwarded); params come from the query, the body (form or JSON) and the path.",
  auth: ["agent"],
  rawBody: {
    types: ["application/x-www-form-urlencoded", "application/json"],
    description: "The provider's own request body",
  },
  headers: CALL_HEADERS,
};
const WEBHOOK_DOC: RouteDoc = {
  tag: "providers",
  summary: "Inbound provider events (Stripe, Revolut…), checked against the provider's signature",
  description:
    "Authenticated by the provider's signature over the raw body (its webhook secret), not by a token.",
  auth: [],
  rawBody: { types: ["application/json"], description: "The event as the provider signed it" },
};

export interface ProviderRouteDeps {
  providers: ProviderGateway;
  tokens: Pick<TokenService, "authenticate">;
  bodyLimitBytes: number;
}

function send(reply: FastifyReply, a: ProviderAnswer) {
  reply.code(a.status).header("x-butler-event-id", a.eventId);
  if (a.contentType) reply.header("content-type", a.contentType);
  return reply.send(a.body);
}

function session(req: FastifyRequest): string | undefined {
  const v = req.headers["x-butler-session"];
  if (v === undefined) return undefined;
  if (typeof v !== "string" || !/^[\x21-\x7e]{1,128}$/.test(v))
    throw new AppError("INVALID_INPUT", "X-Butler-Session: must be 1 to 128 printable ASCII characters");
  return v;
}

function idempotencyKey(req: FastifyRequest): string | undefined {
  const k = req.headers["idempotency-key"];
  if (k === undefined) return undefined;
  if (typeof k !== "string" || !IDEMPOTENCY_KEY.test(k))
    throw new AppError("INVALID_INPUT", "Idempotency-Key: must be 1 to 255 printable ASCII characters");
  return k;
}

/** X-Butler-Reason: why the call is made, percent-encoded (UTF-8) as headers are ASCII. */
function callReason(req: FastifyRequest): string | undefined {
  const v = req.headers["x-butler-reason"];
  if (v === undefined) return undefined;
  let text: string | undefined;
  try {
    text = typeof v === "string" ? decodeURIComponent(v) : undefined;
  } catch {
    text = undefined;
  }
  if (text === undefined || !safeText(2000).safeParse(text).success)
    throw new AppError(
      "INVALID_INPUT",
      "X-Butler-Reason: must be at most 2000 characters of text without NUL, percent-encoded (encodeURIComponent)",
    );
  return text;
}

/**
 * The reason of an operations call: in the body's `reason` or in X-Butler-Reason (read as the
 * proxy reads it), once; the same text in both is one reason, two different ones are refused.
 */
function bodyOrHeaderReason(inBody: string | undefined, req: FastifyRequest): string | undefined {
  const inHeader = callReason(req);
  if (inBody !== undefined && inHeader !== undefined && inBody !== inHeader)
    throw new AppError(
      "INVALID_INPUT",
      "the reason is both in the body and in X-Butler-Reason, and they differ: send it once",
    );
  return inBody ?? inHeader;
}

function nested(pairs: Iterable<[string, string]>, where: string): Record<string, unknown> {
  const r = nestPairs(pairs);
  if (!r.ok) throw new AppError("INVALID_INPUT", `${where}: ${r.error}`);
  return r.value;
}

/**
 * Providers in the call path: `POST /v1/providers/:provider/operations/:operation` with
 * `{params}`, and the transparent proxy `/v1/proxy/:provider/*` for unmodified SDKs. Both
 * authenticate the agent with its Butler token, which is never passed on.
 */
export async function registerProviderRoutes(app: FastifyInstance, deps: ProviderRouteDeps): Promise<void> {
  app.post(
    "/v1/providers/:provider/operations/:operation",
    { config: { doc: OPERATION_DOC } },
    async (req, reply) => {
      const identity = await requireAgent(req, deps.tokens);
      const p = parseInput(CallParams, req.params, "params");
      const body = parseInput(CallBody, req.body ?? {}, "body");
      return send(
        reply,
        await deps.providers.call(identity, {
          provider: p.provider,
          operation: p.operation,
          params: body.params ?? {},
          idempotencyKey: idempotencyKey(req),
          session: session(req),
          reason: bodyOrHeaderReason(body.reason, req),
          accept: req.headers.accept,
        }),
      );
    },
  );

  await app.register(async (scope) => {
    // The proxy reads bodies as the SDK sent them: form (Stripe) or JSON.
    rawBodies(scope, deps.bodyLimitBytes);
    // Inbound events: the raw body is what the provider signed.
    scope.post("/v1/webhooks/:provider", { config: { doc: WEBHOOK_DOC } }, async (req) => {
      const { provider } = req.params as { provider: string };
      const r = await deps.providers.webhook(
        provider,
        req.headers,
        typeof req.body === "string" ? req.body : "",
      );
      return { received: true, ...r };
    });
    scope.all("/v1/proxy/:provider/*", { config: { doc: PROXY_DOC } }, async (req, reply) => {
      const { provider } = req.params as { provider: string };
      // The path after the provider segment as the client wrote it (see proxied).
      const rest = rawPathOf(req).replace(/^\/v1\/proxy\/[^/]*/, "");
      return send(reply, await proxied(deps, req, provider, rest));
    });
  });
}

/** The request's path as the client sent it: still percent-encoded, no dot segments removed. */
function rawPathOf(req: FastifyRequest): string {
  return req.raw.url?.split("?", 1)[0] ?? "/";
}

/**
 * One proxied request: the agent's Butler token, then the operation the method and path mean
 * (an unknown path is denied and audited, never forwarded), then the params from query, body
 * (form or JSON) and path, then the pipeline. The path is matched as sent, still percent-encoded
 * (fastify's decoded wildcard would turn `%2f` into a separator and `%2e` into a dot segment):
 * each path parameter is one raw segment, decoded once by `route`.
 */
async function proxied(
  deps: ProviderRouteDeps,
  req: FastifyRequest,
  provider: string,
  rawPath: string,
): Promise<ProviderAnswer> {
  const identity = await requireAgent(req, deps.tokens);
  const url = new URL(req.url, "http://proxy.local");
  const path = (rawPath.startsWith("/") ? rawPath : `/${rawPath}`).replace(/\/{2,}/g, "/");
  const routed = deps.providers.route(provider, req.method, path);
  if (!routed) return deps.providers.denyUnknown(identity, provider, req.method, path);
  const params = proxiedParams(url.searchParams, req.body, req.headers["content-type"], routed.pathParams);
  return deps.providers.call(identity, {
    provider,
    operation: routed.op.name,
    params,
    idempotencyKey: idempotencyKey(req),
    session: session(req),
    accept: req.headers.accept,
    reason: callReason(req),
  });
}

/**
 * The params of a proxied request: the query, then the body (form or JSON), then the path
 * parameters; a name given in two places is refused rather than one silently winning.
 */
function proxiedParams(
  query: URLSearchParams,
  body: unknown,
  contentType: string | undefined,
  pathParams: Record<string, string>,
): Record<string, unknown> {
  const params: Record<string, unknown> = nested(query.entries(), "query");
  const raw = typeof body === "string" ? body : "";
  if (raw.length > 0) {
    const type = String(contentType ?? "")
      .split(";", 1)[0]!
      .trim()
      .toLowerCase();
    for (const [k, v] of Object.entries(bodyParams(type, raw))) {
      if (k in params)
        throw new AppError("INVALID_INPUT", `parameter ${k} is both in the query and in the body`);
      params[k] = v;
    }
  }
  for (const [k, v] of Object.entries(pathParams)) {
    if (k in params && params[k] !== v)
      throw new AppError("INVALID_INPUT", `parameter ${k} is both in the path and in the request`);
    params[k] = v;
  }
  return params;
}

/** A proxied body as params, by its media type: form (Stripe's SDKs) or JSON. */
function bodyParams(type: string, raw: string): Record<string, unknown> {
  if (type === "application/x-www-form-urlencoded") return nested(new URLSearchParams(raw).entries(), "body");
  if (type !== "application/json")
    throw new AppError(
      "UNSUPPORTED_MEDIA_TYPE",
      `send the body as application/x-www-form-urlencoded or application/json, not ${type || "no content type"}`,
    );
  let j: unknown;
  try {
    j = JSON.parse(raw);
  } catch (e) {
    throw new AppError("INVALID_INPUT", `body: not valid JSON (${(e as Error).message})`);
  }
  return parseInput(paramsObject, j, "body");
}

/**
 * A provider served at the root of a port of its own (BUTLER_PROVIDER_PORTS): the same proxy as
 * `/v1/proxy/<provider>/*`, for SDKs that take a host and port but no base path, such as
 * stripe-node (`new Stripe(agentToken, {host, port, protocol: "http"})`).
 */
export function buildProviderListener(
  deps: ProviderRouteDeps & { provider: string; log: Logger },
): FastifyInstance {
  const app = createFastify({ log: deps.log, bodyLimitBytes: deps.bodyLimitBytes });
  rawBodies(app, deps.bodyLimitBytes);
  app.all("/*", async (req, reply) => send(reply, await proxied(deps, req, deps.provider, rawPathOf(req))));
  return app;
}
