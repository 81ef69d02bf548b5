import { z } from "zod";
import { ERROR_CODES, httpStatus } from "../errors.js";
import type { Auth, RegisteredRoute, RouteDoc } from "./route-doc.js";

/**
 * The OpenAPI 3.1 document of the routes a server registered (see `collectRoutes`), built from
 * each route's `doc` and the zod schemas its handler validates with (`z.toJSONSchema`, JSON Schema
 * 2020-12: OpenAPI 3.1's own dialect).
 *
 * The rules of what is listed: every method of every route, except HEAD where the same path has a
 * GET (fastify answers HEAD for every GET: listing it again says nothing) and methods OpenAPI 3.1
 * has no operation for (fastify's `all` includes QUERY). `:name` segments are `{name}`, and a
 * trailing `*` (the rest of the path, slashes included) is `{path}`.
 */

const OPENAPI_METHODS = new Set(["get", "put", "post", "delete", "options", "head", "patch", "trace"]);

const SECURITY_SCHEMES: Record<Auth, { name: string; scheme: Record<string, unknown> }> = {
  agent: {
    name: "agentToken",
    scheme: { type: "http", scheme: "bearer", description: "An agent's token (`butler agents create`)." },
  },
  approver: {
    name: "approverToken",
    scheme: {
      type: "http",
      scheme: "bearer",
      description:
        "An approver's token (`butler approvers token`): lists and decides the approver's projects' requests.",
    },
  },
  admin: {
    name: "adminToken",
    scheme: {
      type: "http",
      scheme: "bearer",
      description: "The admin token (BUTLER_ADMIN_TOKEN, or the one the server keeps in its data directory).",
    },
  },
  session: {
    name: "dashboardSession",
    scheme: {
      type: "apiKey",
      in: "cookie",
      name: "butler_session",
      description:
        "The dashboard's session, set by signing in with an approver's or auditor's token or a one-time link; state changes also need the page's CSRF token.",
    },
  },
  slack: {
    name: "slackSignature",
    scheme: {
      type: "apiKey",
      in: "header",
      name: "X-Slack-Signature",
      description:
        "Slack's HMAC-SHA256 signature of the body (SLACK_SIGNING_SECRET), with X-Slack-Request-Timestamp.",
    },
  },
  telegram: {
    name: "telegramSecret",
    scheme: {
      type: "apiKey",
      in: "header",
      name: "X-Telegram-Bot-Api-Secret-Token",
      description: "The webhook secret Telegram sends back (TELEGRAM_WEBHOOK_SECRET).",
    },
  },
};

/** A schema as JSON Schema 2020-12, as the input the handler accepts (before any transform). */
function jsonSchema(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as Record<
    string,
    unknown
  >;
  return rest;
}

/** `/v1/access-requests/:id` → `/v1/access-requests/{id}`; `/v1/proxy/:provider/*` → `…/{path}`. */
function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, "{$1}").replace(/\*$/, "{path}");
}

function properties(schema: z.ZodType | undefined): { props: Record<string, unknown>; required: string[] } {
  if (!schema) return { props: {}, required: [] };
  const s = jsonSchema(schema);
  return {
    props: (s.properties as Record<string, unknown> | undefined) ?? {},
    required: (s.required as string[] | undefined) ?? [],
  };
}

function parameters(url: string, doc: RouteDoc): unknown[] {
  const path = properties(doc.params);
  const names = [...openApiPath(url).matchAll(/\{([^}]+)\}/g)].map((m) => m[1]!);
  const out: unknown[] = names.map((name) => ({
    name,
    in: "path",
    required: true,
    ...(name === "path" && url.endsWith("*")
      ? { description: "The rest of the path, slashes included.", schema: { type: "string" } }
      : { schema: path.props[name] ?? { type: "string" } }),
  }));
  const query = properties(doc.query);
  for (const [name, schema] of Object.entries(query.props))
    out.push({ name, in: "query", required: query.required.includes(name), schema });
  for (const h of doc.headers ?? [])
    out.push({
      name: h.name,
      in: "header",
      required: false,
      description: h.description,
      schema: { type: "string" },
    });
  return out;
}

function requestBody(doc: RouteDoc): Record<string, unknown> | undefined {
  if (doc.body)
    return {
      required: !doc.optionalBody,
      content: { "application/json": { schema: jsonSchema(doc.body) } },
    };
  if (doc.rawBody)
    return {
      required: false,
      description: doc.rawBody.description,
      content: Object.fromEntries(doc.rawBody.types.map((t) => [t, { schema: {} }])),
    };
  return undefined;
}

function responses(doc: RouteDoc): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [status, r] of Object.entries(doc.responses ?? { 200: { description: "OK" } })) {
    const type = r.type ?? "application/json";
    out[status] = {
      description: r.description,
      ...(type === "none" ? {} : { content: { [type]: { schema: {} } } }),
    };
  }
  if ((doc.errors ?? "json") === "json") {
    out["4XX"] = { $ref: "#/components/responses/Error" };
    out["5XX"] = { $ref: "#/components/responses/Error" };
  } else {
    out.default = {
      description:
        "A JSON-RPC 2.0 error object (`{jsonrpc, id, error: {code, message}}`), with 401 for a missing or unknown token and 503 while the database is unavailable.",
      content: { "application/json": { schema: { type: "object" } } },
    };
  }
  return out;
}

function operation(url: string, doc: RouteDoc): Record<string, unknown> {
  const body = requestBody(doc);
  return {
    tags: [doc.tag],
    summary: doc.summary,
    ...(doc.description ? { description: doc.description } : {}),
    security: doc.auth.map((a) => ({ [SECURITY_SCHEMES[a].name]: [] })),
    parameters: parameters(url, doc),
    ...(body ? { requestBody: body } : {}),
    responses: responses(doc),
  };
}

const ERROR_SCHEMA = {
  type: "object",
  required: ["error"],
  properties: {
    error: {
      type: "object",
      required: ["code", "message"],
      properties: {
        code: { type: "string", enum: [...ERROR_CODES] },
        message: { type: "string", description: "What went wrong, written for the reader." },
        request_id: {
          type: "string",
          pattern: "^http-[0-9a-f]{16}$",
          description: "This HTTP request's id, as the server's log names it.",
        },
        details: {
          type: "object",
          description: "More about some errors: `problems`, one per invalid input.",
        },
      },
    },
  },
};

/** The OpenAPI document of `routes` (each described; see `collectRoutes`). */
export function openApiDocument(
  routes: readonly RegisteredRoute[],
  info: { title: string; version: string; description: string },
): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    if (!r.doc) continue;
    const path = openApiPath(r.url);
    for (const m of r.methods.map((x) => x.toLowerCase()).filter((x) => OPENAPI_METHODS.has(x))) {
      paths[path] ??= {};
      paths[path][m] = operation(r.url, r.doc);
    }
  }
  for (const item of Object.values(paths)) if (item.get) delete item.head;
  const statuses = ERROR_CODES.map((c) => `${c} ${httpStatus(c)}`).join(", ");
  return {
    openapi: "3.1.0",
    info,
    paths: Object.fromEntries(Object.entries(paths).sort(([a], [b]) => a.localeCompare(b))),
    components: {
      securitySchemes: Object.fromEntries(Object.values(SECURITY_SCHEMES).map((s) => [s.name, s.scheme])),
      schemas: { Error: ERROR_SCHEMA },
      responses: {
        Error: {
          description: `An error: \`{error: {code, message, request_id}}\`. The status follows the code: ${statuses}. 401 answers carry WWW-Authenticate, 503 answers Retry-After.`,
          content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
        },
      },
    },
  };
}
