import type { FastifyInstance } from "fastify";
import type { z } from "zod";

/**
 * What a route tells the API's readers, carried on the route itself as `config: { doc }` so that
 * it is written where the route is. The OpenAPI document (`/openapi.json`) and its page (`/docs`)
 * are made from these, with the same zod schemas the handlers validate with; the server refuses
 * to start when a route it registers has none (see `collectRoutes`).
 */
export interface RouteDoc {
  /** The group the route is listed under: `agents`, `approvers`, `admin`, `dashboard`… */
  tag: string;
  summary: string;
  description?: string;
  /** The credentials the route accepts (any one of them); an empty list for a public route. */
  auth: readonly Auth[];
  params?: z.ZodType;
  query?: z.ZodType;
  /** A JSON body, as the handler checks it. */
  body?: z.ZodType;
  /** The JSON body may be left out (every field is optional). */
  optionalBody?: true;
  /** A body the handler reads as it came (a signed webhook, the proxy, JSON-RPC): its media types. */
  rawBody?: { types: readonly string[]; description: string };
  /** Request headers the route reads. */
  headers?: readonly { name: string; description: string }[];
  /** Answers on success by status (200 with a JSON body when not given). */
  responses?: Readonly<Record<number, { description: string; type?: string }>>;
  /** How failures are answered: the `{error: {code, message}}` shape (the default) or JSON-RPC errors. */
  errors?: "json" | "json-rpc";
}

/**
 * The credentials of a call: an agent's, an approver's or the operators' admin token (bearer), the
 * dashboard's session cookie, or a chat platform's signature on its webhook.
 */
export type Auth = "agent" | "approver" | "admin" | "session" | "slack" | "telegram";

declare module "fastify" {
  interface FastifyContextConfig {
    doc?: RouteDoc;
  }
}

/** A route as fastify registered it. */
export interface RegisteredRoute {
  methods: readonly string[];
  /** With fastify's syntax: `/v1/access-requests/:id`, `/v1/proxy/:provider/*`. */
  url: string;
  doc: RouteDoc | undefined;
}

/**
 * Every route registered on `app` from now on (add this before any route), as fastify's `onRoute`
 * hook reports them, and a check run when the server is ready: a route without a `doc` stops the
 * start, naming it. A route cannot be added without being described.
 */
export function collectRoutes(app: FastifyInstance): readonly RegisteredRoute[] {
  const routes: RegisteredRoute[] = [];
  app.addHook("onRoute", (r) => {
    routes.push({
      methods: Array.isArray(r.method) ? [...r.method] : [r.method as string],
      url: r.url,
      doc: r.config?.doc,
    });
  });
  app.addHook("onReady", async () => {
    const missing = routes.filter((r) => !r.doc).map((r) => `${r.methods.join(",")} ${r.url}`);
    if (missing.length > 0)
      throw new Error(`routes without a description (config.doc) for /openapi.json: ${missing.join("; ")}`);
  });
  return routes;
}
