import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Butler } from "../butler/butler-service.js";
import { AppError } from "../errors.js";
import { parseInput } from "../http/validation.js";
import type { DashboardDeps } from "./deps.js";
import { type Html, requestCard, requestPage, requestsFragment, requestsPage } from "./html.js";
import { ApproveForm, blank, DenyForm, RequestId } from "./inputs.js";
import { dashboardDoc } from "./route-docs.js";
import { canDecide, type SessionHooks, sessionOf, viewerOf, visible, wantsJson } from "./session-hooks.js";
import type { DashboardSession } from "./sessions.js";

/** The requests page, its live fragment, and the approve and deny buttons. */
export async function requestRoutes(
  scope: FastifyInstance,
  { deps, hooks }: { deps: DashboardDeps; hooks: SessionHooks },
): Promise<void> {
  /** The viewer's cards, read in one batch (a bounded number of queries however many are pending). */
  async function cards(s: DashboardSession): Promise<Html[]> {
    // The newest 50 of the viewer's projects' requests that are pending or were decided in the
    // last hour.
    const mine = s.role === "auditor" ? {} : { approver: s.approver };
    const hourAgo = deps.clock.now().getTime() - 3600_000;
    const list = await deps.butler.listCards({
      ...mine,
      pendingOrDecidedSince: new Date(hourAgo),
      limit: 50,
    });
    return list.map(({ card: c }) => requestCard(c, viewerOf(s), canDecide(deps, s, c)));
  }

  scope.get(
    "/dashboard",
    { ...dashboardDoc("Pending access requests"), preHandler: hooks.page },
    async (req, reply) => {
      const s = sessionOf(req);
      reply.type("text/html; charset=utf-8");
      return requestsPage(await cards(s), viewerOf(s));
    },
  );

  // One request, whenever it was filed or decided: where a chat card's "Full proposal" link leads.
  // An approver sees the requests of their projects (another project's is "not found", as in the
  // API); an auditor every request.
  scope.get(
    "/dashboard/requests/:id",
    {
      ...dashboardDoc("One access request's page (where a chat card's Full proposal link leads)"),
      preHandler: hooks.page,
    },
    async (req, reply) => {
      const s = sessionOf(req);
      const rid = parseInput(RequestId, (req.params as { id: string }).id, "request id");
      const c = await deps.butler.card(rid);
      const projects = visible(deps, s);
      if (projects && !projects.includes(c.project))
        throw new AppError("NOT_FOUND", `no access request ${rid}`);
      reply.type("text/html; charset=utf-8");
      return requestPage(requestCard(c, viewerOf(s), canDecide(deps, s, c)), viewerOf(s), rid);
    },
  );

  scope.get(
    "/dashboard/fragments/requests",
    { ...dashboardDoc("The requests list, as an HTML fragment"), preHandler: hooks.read },
    async (req, reply) => {
      reply.type("text/html; charset=utf-8");
      return requestsFragment(await cards(sessionOf(req))).value;
    },
  );

  async function decide(req: FastifyRequest, reply: FastifyReply, verdict: "approve" | "deny") {
    const s = sessionOf(req);
    const rid = parseInput(RequestId, (req.params as { id: string }).id, "request id");
    if (s.role !== "approver") throw new AppError("FORBIDDEN", "auditors can read, not decide");
    const who = { approver: s.approver, channel: "dashboard" } as const;
    let result: Awaited<ReturnType<Butler["review"]>>;
    if (verdict === "approve") {
      const b = parseInput(ApproveForm, req.body ?? {}, "form");
      result = await deps.butler.review(who, rid, "approve", {
        ttl: b.ttl === undefined ? undefined : Number(b.ttl),
      });
    } else {
      const b = parseInput(DenyForm, req.body ?? {}, "form");
      result = await deps.butler.review(who, rid, "deny", { reason: blank(b.reason?.trim()) });
    }
    if (!wantsJson(req)) return reply.redirect(`/dashboard#req-${rid}`, 303);
    const c = result.card;
    return { outcome: result.outcome, html: requestCard(c, viewerOf(s), canDecide(deps, s, c)).value };
  }
  scope.post(
    "/dashboard/requests/:id/approve",
    { ...dashboardDoc("Approve an access request", { form: true }), preHandler: hooks.change },
    (req, reply) => decide(req, reply, "approve"),
  );
  scope.post(
    "/dashboard/requests/:id/remember",
    {
      ...dashboardDoc("Make an approved grant a permanent rule of the policy file", { form: true }),
      preHandler: hooks.change,
    },
    async (req, reply) => {
      const s = sessionOf(req);
      const rid = parseInput(RequestId, (req.params as { id: string }).id, "request id");
      if (s.role !== "approver") throw new AppError("FORBIDDEN", "auditors can read, not decide");
      const result = await deps.butler.remember(s.approver, rid);
      if (!wantsJson(req)) return reply.redirect(`/dashboard/requests/${rid}`, 303);
      return result;
    },
  );
  scope.post(
    "/dashboard/requests/:id/deny",
    { ...dashboardDoc("Deny an access request", { form: true }), preHandler: hooks.change },
    (req, reply) => decide(req, reply, "deny"),
  );
}
