import { Readable } from "node:stream";
import type { FastifyInstance } from "fastify";
import { rowToLine } from "../audit/audit-log.js";
import { canonicalJson } from "../audit/chain.js";
import type { VerifyResult } from "../audit/verify.js";
import { parseInput } from "../http/validation.js";
import type { DashboardDeps } from "./deps.js";
import { type EventFilter, exportRows, latestEvents } from "./events.js";
import { auditPage, timelinePage } from "./html.js";
import { blank, Filters } from "./inputs.js";
import { dashboardDoc } from "./route-docs.js";
import { type SessionHooks, sessionOf, viewerOf, visible } from "./session-hooks.js";
import type { DashboardSession } from "./sessions.js";

/** The audit events a viewer asked for, among those they may see. */
export function eventFilter(
  deps: Pick<DashboardDeps, "butler">,
  s: DashboardSession,
  q: Filters,
): EventFilter {
  return {
    projects: visible(deps, s),
    agent: blank(q.agent),
    project: blank(q.project),
    type: blank(q.type),
    about: blank(q.grant),
    eventId: blank(q.event),
  };
}

/** The chain's state in words, as the audit page heads it. */
function chainSummary(v: VerifyResult, at: number): { ok: boolean; text: string } {
  return v.ok
    ? {
        ok: true,
        text: `verified up to sequence ${v.verifiedThrough} (${v.count} events, checked ${new Date(at).toISOString()})`,
      }
    : { ok: false, text: `first broken link at sequence ${v.break?.seq}: ${v.break?.problem}` };
}

/** The timeline, the audit log page (with the chain's verification) and its export. */
export async function auditRoutes(
  scope: FastifyInstance,
  { deps, hooks }: { deps: DashboardDeps; hooks: SessionHooks },
): Promise<void> {
  // Verifying walks the whole chain: at most every 30 s, however often the page is loaded.
  let verified: { at: number; result: VerifyResult } | undefined;

  scope.get(
    "/dashboard/timeline",
    { ...dashboardDoc("The live timeline of audit events"), preHandler: hooks.page },
    async (req, reply) => {
      const s = sessionOf(req);
      const q = parseInput(Filters, req.query, "query");
      const events = await latestEvents(deps.db, eventFilter(deps, s, q), 100);
      reply.type("text/html; charset=utf-8");
      return timelinePage(events, viewerOf(s), { agent: q.agent, project: q.project });
    },
  );

  scope.get(
    "/dashboard/audit",
    { ...dashboardDoc("The audit log, filtered, with its verification"), preHandler: hooks.page },
    async (req, reply) => {
      const s = sessionOf(req);
      const q = parseInput(Filters, req.query, "query");
      const f = { ...eventFilter(deps, s, q), beforeSeq: q.before ? Number(q.before) : undefined };
      const events = await latestEvents(deps.db, f, 100);
      if (!verified || deps.clock.now().getTime() - verified.at > 30_000)
        verified = { at: deps.clock.now().getTime(), result: await deps.verifyAudit() };
      const older =
        events.length === 100
          ? new URLSearchParams(
              Object.entries({ ...q, before: String(events[0]!.seq) }).filter(
                (e): e is [string, string] => !!e[1],
              ),
            ).toString()
          : undefined;
      reply.type("text/html; charset=utf-8");
      return auditPage(
        events.reverse(),
        viewerOf(s),
        chainSummary(verified.result, verified.at),
        { agent: q.agent, project: q.project, type: q.type },
        older,
      );
    },
  );

  scope.get(
    "/dashboard/audit/export.jsonl",
    {
      ...dashboardDoc("The filtered audit log as JSON lines", { type: "application/x-ndjson" }),
      preHandler: hooks.read,
    },
    async (req, reply) => {
      const s = sessionOf(req);
      const q = parseInput(Filters, req.query, "query");
      reply
        .header("content-type", "application/x-ndjson; charset=utf-8")
        .header("content-disposition", 'attachment; filename="butler-audit.jsonl"');
      if (req.method === "HEAD") return reply.send();
      const rows = exportRows(deps.db, eventFilter(deps, s, q));
      // A stream (fastify serialises a bare generator as `{}`), read page by page: memory stays
      // flat however long the log is. The same lines as the admin API's export.
      return reply.send(
        Readable.from(
          (async function* () {
            for await (const r of rows) yield `${canonicalJson(rowToLine(r))}\n`;
          })(),
        ),
      );
    },
  );
}
