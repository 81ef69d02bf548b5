import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { FastifyInstance } from "fastify";
import { AppError } from "../errors.js";
import { agentRoutes } from "./agent-routes.js";
import { auditRoutes } from "./audit-routes.js";
import type { DashboardDeps } from "./deps.js";
import { grantRoutes } from "./grant-routes.js";
import { historyRoutes } from "./history-routes.js";
import { liveRoutes } from "./live-routes.js";
import { requestRoutes } from "./request-routes.js";
import { dashboardDoc } from "./route-docs.js";
import { requireChangeGuard, SECURITY_HEADERS, sessionHooks } from "./session-hooks.js";
import { signInRoutes } from "./sign-in-routes.js";

export type { DashboardDeps } from "./deps.js";

const ASSETS_DIR = fileURLToPath(new URL("../../public/dashboard/", import.meta.url));
const ASSETS: Record<string, string> = {
  "dashboard.css": "text/css; charset=utf-8",
  "dashboard.js": "text/javascript; charset=utf-8",
};

/** The page's stylesheet and script, read once. */
async function assetRoutes(scope: FastifyInstance): Promise<void> {
  const assets = new Map(
    Object.entries(ASSETS).map(([file, type]) => [file, { type, body: readFileSync(ASSETS_DIR + file) }]),
  );
  scope.get(
    "/dashboard/assets/:file",
    dashboardDoc("The pages' stylesheet and script", { public: true, type: "text/css" }),
    async (req, reply) => {
      const a = assets.get((req.params as { file: string }).file);
      if (!a) throw new AppError("NOT_FOUND", "no such asset");
      reply.header("content-type", a.type).header("cache-control", "public, max-age=300");
      return reply.send(a.body);
    },
  );
}

/**
 * The dashboard: one plugin per page group, under one scope that sets the security headers and
 * reads url-encoded forms. Each route names, as its `preHandler`, how it admits its caller (a page,
 * a read the page's script makes, or a state change); the handler then reads `sessionOf(req)`.
 */
export async function registerDashboard(app: FastifyInstance, deps: DashboardDeps): Promise<void> {
  await app.register(async (scope) => {
    scope.addHook("onSend", async (_req, reply) => {
      for (const [k, v] of Object.entries(SECURITY_HEADERS)) reply.header(k, v);
    });
    // Forms post url-encoded fields; the script posts the same.
    scope.addContentTypeParser(
      "application/x-www-form-urlencoded",
      { parseAs: "string" },
      (_req, body, done) => done(null, Object.fromEntries(new URLSearchParams(body as string))),
    );
    const group = { deps, hooks: sessionHooks(deps) };
    requireChangeGuard(scope, group.hooks.change);
    await scope.register(assetRoutes);
    await scope.register(signInRoutes, group);
    await scope.register(requestRoutes, group);
    await scope.register(grantRoutes, group);
    await scope.register(agentRoutes, group);
    await scope.register(historyRoutes, group);
    await scope.register(auditRoutes, group);
    await scope.register(liveRoutes, group);
  });
}
