import type { FastifyInstance } from "fastify";
import { SECURITY_HEADERS } from "../dashboard/session-hooks.js";
import { openApiDocument } from "../http/openapi.js";
import { openApiPage } from "../http/openapi-page.js";
import type { RegisteredRoute } from "../http/route-doc.js";
import { PACKAGE_VERSION } from "../version.js";

const INFO = {
  title: "Butler",
  version: PACKAGE_VERSION,
  description:
    "A deny-by-default governance gateway for AI agents: agents ask before they act (`/v1/authorize`), file access requests that people decide, and call providers through Butler; operators use the admin API. JSON field names are snake_case, except in the A2A protocol's own messages. Provider ports (BUTLER_PROVIDER_PORTS) serve the proxy of one provider at their root and are not listed.",
};

/**
 * `GET /openapi.json` (the OpenAPI 3.1 document of every route `routes` holds, made once the
 * server is ready: every route is registered by then) and `GET /docs` (its reference page, under
 * the dashboard's Content-Security-Policy). Both public: they describe, they grant nothing.
 */
export function registerOpenApiRoutes(app: FastifyInstance, routes: readonly RegisteredRoute[]): void {
  // Made when the server is ready (every route registered), once: a route whose schema cannot be
  // described stops the start instead of making this public route answer 500.
  let json = "";
  let page = "";
  app.addHook("onReady", async () => {
    const document = openApiDocument(routes, INFO);
    json = JSON.stringify(document);
    page = openApiPage(document);
  });
  app.get(
    "/openapi.json",
    {
      config: {
        doc: {
          tag: "about",
          summary: "This description of the HTTP API, as an OpenAPI 3.1 document",
          auth: [],
        },
      },
    },
    async (_req, reply) => reply.header("content-type", "application/json; charset=utf-8").send(json),
  );
  app.get(
    "/docs",
    {
      config: {
        doc: {
          tag: "about",
          summary: "The HTTP API's reference page (this document as HTML)",
          auth: [],
          responses: { 200: { description: "The page", type: "text/html" } },
        },
      },
    },
    async (_req, reply) => {
      for (const [k, v] of Object.entries(SECURITY_HEADERS)) reply.header(k, v);
      return reply.header("content-type", "text/html; charset=utf-8").send(page);
    },
  );
}
