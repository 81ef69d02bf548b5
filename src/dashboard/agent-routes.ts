import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { AppError } from "../errors.js";
import { parseInput } from "../http/validation.js";
import { agentName, projectName } from "../policy/schema.js";
import { agentPage } from "./agent-page.js";
import type { DashboardDeps } from "./deps.js";
import { dashboardDoc } from "./route-docs.js";
import { type SessionHooks, sessionOf, viewerOf, visible, wantsJson } from "./session-hooks.js";

const AgentParams = z.strictObject({ project: projectName, agent: agentName });

/** An agent's page: pact, health, trust over time, drift, recent violations. */
export async function agentRoutes(
  scope: FastifyInstance,
  { deps, hooks }: { deps: DashboardDeps; hooks: SessionHooks },
): Promise<void> {
  scope.get(
    "/dashboard/agents/:project/:agent",
    {
      ...dashboardDoc("An agent: pact, health, trust over time, drift and recent violations"),
      preHandler: hooks.page,
    },
    async (req, reply) => {
      const s = sessionOf(req);
      const p = parseInput(AgentParams, req.params, "path");
      // An approver sees the agents of the projects they approve for; an auditor every agent.
      const projects = visible(deps, s);
      if (projects && !projects.includes(p.project))
        throw new AppError("NOT_FOUND", `no agent ${p.agent} in ${p.project} for you`);
      const health = await deps.admin.agentHealth(p.agent, p.project);
      if (wantsJson(req)) return health;
      reply.type("text/html; charset=utf-8");
      return agentPage(health, viewerOf(s), deps.clock.now());
    },
  );
}
