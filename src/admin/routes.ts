import { Readable } from "node:stream";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { type AuditLine, canonicalJson } from "../audit/chain.js";
import { AppError } from "../errors.js";
import { requireAdmin } from "../http/auth.js";
import type { RouteDoc } from "../http/route-doc.js";
import { parseInput } from "../http/validation.js";
import type { AdminOps } from "./admin-service.js";
import { ADMIN_PREFIX, ADMIN_ROUTES, type AdminRoute } from "./route-table.js";

export interface AdminRouteDeps {
  admin: AdminOps;
  adminToken: string;
}

/** The admin API under `/v1/admin` (admin token): one route per row of `ADMIN_ROUTES`. */
export async function registerAdminRoutes(app: FastifyInstance, deps: AdminRouteDeps): Promise<void> {
  await app.register(
    async (scope) => {
      scope.addHook("onRequest", async (req) => requireAdmin(req, deps.adminToken));
      for (const route of ADMIN_ROUTES) {
        scope.route({
          method: route.method,
          url: route.path,
          config: { doc: docOf(route) },
          handler: (req, reply) => handle(route, deps.admin, req, reply),
        });
      }
      const fallback: RouteDoc = {
        tag: "admin",
        summary: "Any other path under /v1/admin: 404 NOT_FOUND (after the admin token is checked)",
        auth: ["admin"],
        responses: {},
      };
      scope.all("/*", { config: { doc: fallback } }, async (req) => {
        throw new AppError("NOT_FOUND", `no admin route ${req.method} ${req.url.split("?")[0]}`);
      });
    },
    { prefix: ADMIN_PREFIX },
  );
}

/** A row of the table as its route's description. */
function docOf(route: AdminRoute): RouteDoc {
  const statuses = typeof route.status === "function" ? [200, 201] : [route.status ?? 200];
  return {
    tag: "admin",
    summary: route.summary,
    auth: ["admin"],
    ...(route.params ? { params: route.params } : {}),
    ...(route.query ? { query: route.query } : {}),
    ...(route.body ? { body: route.body } : {}),
    ...(route.optionalBody ? { optionalBody: true } : {}),
    responses: Object.fromEntries(
      statuses.map((s) => [
        s,
        route.ndjson
          ? { description: "One audit line per line", type: "application/x-ndjson" }
          : { description: s === 201 ? "Created" : "OK" },
      ]),
    ),
  };
}

async function handle(route: AdminRoute, admin: AdminOps, req: FastifyRequest, reply: FastifyReply) {
  // Checked in this order, so that a request wrong in several places is told about its path first.
  const input = {
    params: route.params ? parseInput(route.params, req.params, "params") : undefined,
    query: route.query ? parseInput(route.query, req.query, "query") : undefined,
    body: route.body
      ? parseInput(route.body, route.optionalBody ? (req.body ?? {}) : req.body, "body")
      : undefined,
  };
  const op = admin[route.op] as (...args: unknown[]) => unknown;
  const result = op(...route.args(input));
  if (route.ndjson) return sendLines(req, reply, result as AsyncIterable<AuditLine>);
  const value = await result;
  const status = typeof route.status === "function" ? route.status(value) : (route.status ?? 200);
  return reply.code(status).send(route.reply ? route.reply(value) : value);
}

/** Streams lines page by page, as JSON lines: memory stays flat however long the log is. */
function sendLines(req: FastifyRequest, reply: FastifyReply, lines: AsyncIterable<AuditLine>) {
  reply.header("content-type", "application/x-ndjson; charset=utf-8");
  if (req.method === "HEAD") return reply.send();
  return reply.send(
    Readable.from(
      (async function* () {
        for await (const l of lines) yield `${canonicalJson(l)}\n`;
      })(),
    ),
  );
}
