import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { rowToLine } from "../audit/audit-log.js";
import { story } from "../audit/story.js";
import type { AccessRequestView } from "../butler/butler-service.js";
import { AppError } from "../errors.js";
import { parseInput } from "../http/validation.js";
import { policyDiff } from "../policy/effective.js";
import { compileGlob } from "../policy/index.js";
import type { DashboardDeps } from "./deps.js";
import { exportRows } from "./events.js";
import { historyPage, type PolicyView, policiesPage, replayPage, simulationPage } from "./html.js";
import { blank, Filters } from "./inputs.js";
import { dashboardDoc } from "./route-docs.js";
import { type SessionHooks, sessionOf, viewerOf, visible } from "./session-hooks.js";

/** Which past requests the history page shows: the viewer's projects, narrowed by the filters. */
function historyMatch(q: Filters, projects: string[] | undefined): (r: AccessRequestView) => boolean {
  const action = blank(q.action);
  // The same glob syntax as policies (stripe:*, aws:s3:Get*).
  const glob = action ? compileGlob(action) : undefined;
  if (glob && !glob.ok) throw new AppError("INVALID_INPUT", `action: not a valid pattern: it ${glob.error}`);
  const actionMatch = glob?.ok ? glob.value : undefined;
  const since = q.since ? Date.parse(`${q.since}T00:00:00Z`) : undefined;
  const until = q.until ? Date.parse(`${q.until}T23:59:59.999Z`) : undefined;
  return (r) => {
    const at = Date.parse(r.created_at);
    return (
      (projects === undefined || projects.includes(r.project)) &&
      (!blank(q.agent) || r.agent === q.agent) &&
      (!blank(q.project) || r.project === q.project) &&
      (!actionMatch || actionMatch.match(r.action)) &&
      (!blank(q.approver) ||
        r.approvals.some((a) => a.approver === q.approver) ||
        (r.decision?.by ?? "").split(", ").includes(q.approver!)) &&
      (since === undefined || at >= since) &&
      (until === undefined || at <= until)
    );
  };
}

/** One project's policy page: the effective YAML, its revisions, and a diff between two of them. */
async function policyView(deps: DashboardDeps, project: string, q: Filters): Promise<PolicyView | undefined> {
  const at = momentOf(q.at);
  const effective = await deps.admin.showPolicy(project, at).catch(() => undefined);
  if (!effective) return undefined;
  const revisions = await deps.admin.policyHistory(project);
  const view: PolicyView = {
    project,
    yaml: effective.yaml,
    at:
      effective.at === undefined
        ? undefined
        : { at: effective.at, revision: effective.revision, grants: effective.grantsInForce?.length ?? 0 },
    revisions: revisions
      .map((r) => ({ revision: r.revision, createdAt: r.createdAt, source: r.source, cause: r.cause }))
      .sort((a, b) => b.revision - a.revision),
  };
  if (q.project === project && q.from && q.to) {
    const [a, b] = await Promise.all([
      deps.admin.policyRevision(project, Number(q.from)),
      deps.admin.policyRevision(project, Number(q.to)),
    ]);
    view.diff = {
      from: a.revision,
      to: b.revision,
      text:
        a.yaml === b.yaml
          ? ""
          : policyDiff(project, a.yaml, b.yaml, `revision ${a.revision}`, `revision ${b.revision}`),
    };
  }
  return view;
}

const SimulateParams = z.strictObject({
  project: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, "must be a project name"),
});
const SimulateForm = z.object({
  yaml: z
    .string()
    .min(1, "is empty: paste the whole policy file")
    .max(1024 * 1024, "is larger than 1 MiB"),
  since: z.string().max(64).optional(),
  _csrf: z.string().optional(),
});

/** The policies page's `at` as a Date (UTC when it names no zone); undefined for now. */
function momentOf(at: string | undefined): Date | undefined {
  if (!at) return undefined;
  const t = Date.parse(/(Z|[+-]\d{2}:\d{2})$/.test(at) ? at : `${at}Z`);
  if (Number.isNaN(t)) throw new AppError("INVALID_INPUT", `at: ${at} is not a time`);
  return new Date(t);
}

/** The past: decided requests, the policies' revisions, and one agent's session replayed. */
export async function historyRoutes(
  scope: FastifyInstance,
  { deps, hooks }: { deps: DashboardDeps; hooks: SessionHooks },
): Promise<void> {
  scope.get(
    "/dashboard/history",
    { ...dashboardDoc("Access requests, pending and decided, searchable"), preHandler: hooks.page },
    async (req, reply) => {
      const s = sessionOf(req);
      const q = parseInput(Filters, req.query, "query");
      const match = historyMatch(q, visible(deps, s));
      const rows = (
        await deps.butler.list({
          limit: 1000,
          ...(s.role === "auditor" ? {} : { approver: s.approver }),
          ...(blank(q.status) ? { status: q.status as "pending" } : {}),
        })
      ).filter(match);
      reply.type("text/html; charset=utf-8");
      return historyPage(rows, viewerOf(s), {
        agent: q.agent,
        project: q.project,
        action: q.action,
        approver: q.approver,
        status: q.status,
        since: q.since,
        until: q.until,
      });
    },
  );

  scope.get(
    "/dashboard/policies",
    { ...dashboardDoc("The policies in force and their revisions"), preHandler: hooks.page },
    async (req, reply) => {
      const s = sessionOf(req);
      const q = parseInput(Filters, req.query, "query");
      const projects = visible(deps, s) ?? [...deps.projects().keys()];
      const views: PolicyView[] = [];
      for (const project of [...projects].sort()) {
        const view = await policyView(deps, project, q);
        if (view) views.push(view);
      }
      reply.type("text/html; charset=utf-8");
      return policiesPage(views, viewerOf(s));
    },
  );

  scope.post(
    "/dashboard/policies/:project/simulate",
    {
      ...dashboardDoc("Simulate a policy file over the audit log", { form: true }),
      preHandler: hooks.change,
    },
    async (req, reply) => {
      const s = sessionOf(req);
      const { project } = parseInput(SimulateParams, req.params, "path");
      const body = parseInput(SimulateForm, req.body, "body");
      if (!(visible(deps, s) ?? [...deps.projects().keys()]).includes(project))
        throw new AppError("NOT_FOUND", `no project '${project}' here`);
      const r = await deps.admin.simulatePolicy(project, { yaml: body.yaml, since: body.since || undefined });
      reply.type("text/html; charset=utf-8");
      return simulationPage(r, viewerOf(s));
    },
  );

  scope.get(
    "/dashboard/replay",
    { ...dashboardDoc("An agent's session replayed as a story, from the audit log"), preHandler: hooks.page },
    async (req, reply) => {
      const s = sessionOf(req);
      const q = parseInput(Filters, req.query, "query");
      const agent = blank(q.agent);
      if (!agent) throw new AppError("INVALID_INPUT", "agent: say whose session to replay (?agent=…)");
      const lines: { seq: number; eventId: string; ts: string; text: string }[] = [];
      for await (const r of exportRows(deps.db, {
        projects: visible(deps, s),
        agent,
        project: blank(q.project),
      })) {
        const line = rowToLine(r);
        lines.push({ seq: line.seq, eventId: line.event_id, ts: line.ts, text: story(line) });
        if (lines.length >= 5000) break;
      }
      reply.type("text/html; charset=utf-8");
      return replayPage(agent, lines, viewerOf(s));
    },
  );
}
