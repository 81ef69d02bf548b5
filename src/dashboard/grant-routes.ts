import type { FastifyInstance } from "fastify";
import { AppError } from "../errors.js";
import { parseInput } from "../http/validation.js";
import type { DashboardDeps } from "./deps.js";
import { grantsPage } from "./html.js";
import { blank, Filters, GrantId } from "./inputs.js";
import { dashboardDoc } from "./route-docs.js";
import { type SessionHooks, sessionOf, viewerOf, visible, wantsJson } from "./session-hooks.js";

/** The grants page and its revoke button. */
export async function grantRoutes(
  scope: FastifyInstance,
  { deps, hooks }: { deps: DashboardDeps; hooks: SessionHooks },
): Promise<void> {
  scope.get(
    "/dashboard/grants",
    { ...dashboardDoc("Grants: those in force, or of any state (?state=)"), preHandler: hooks.page },
    async (req, reply) => {
      const s = sessionOf(req);
      const q = parseInput(Filters, req.query, "query");
      const projects = visible(deps, s);
      const all = await deps.butler.listGrants({
        all: q.state !== undefined && q.state !== "active",
        ...(projects ? { projects } : {}),
      });
      const shown = all.filter(
        (g) =>
          (!blank(q.agent) || g.agent === q.agent) &&
          (!blank(q.project) || g.project === q.project) &&
          (q.state === undefined || q.state === "all" || g.state === q.state),
      );
      reply.type("text/html; charset=utf-8");
      return grantsPage(
        shown,
        viewerOf(s),
        (g) => s.role === "approver" && (projects?.includes(g.project) ?? false),
        { agent: q.agent, project: q.project, state: q.state },
      );
    },
  );

  scope.post(
    "/dashboard/grants/:id/revoke",
    { ...dashboardDoc("Revoke a grant", { form: true }), preHandler: hooks.change },
    async (req, reply) => {
      const s = sessionOf(req);
      const gid = parseInput(GrantId, (req.params as { id: string }).id, "grant id");
      if (s.role !== "approver") throw new AppError("FORBIDDEN", "auditors can read, not revoke");
      const project = await deps.butler.grantProject(gid);
      if (!deps.butler.projectsOfApprover(s.approver).includes(project))
        throw new AppError("FORBIDDEN", `you are not an approver for ${project}`);
      const r = await deps.butler.revokeGrant(gid, `approver:${s.approver}`, "revoked in the dashboard");
      if (!wantsJson(req)) return reply.redirect("/dashboard/grants", 303);
      return r;
    },
  );
}
