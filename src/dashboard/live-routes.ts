import type { ServerResponse } from "node:http";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { parseInput } from "../http/validation.js";
import { eventFilter } from "./audit-routes.js";
import type { DashboardDeps } from "./deps.js";
import { type EventFilter, eventsAfter, latestEvents } from "./events.js";
import { timelineItem } from "./html.js";
import { Filters } from "./inputs.js";
import { dashboardDoc } from "./route-docs.js";
import { cookieOf, SECURITY_HEADERS, type SessionHooks, sessionOf } from "./session-hooks.js";

/** Where a stream starts: after the last event the browser saw (a reconnect), or after the newest. */
async function startAfter(
  deps: DashboardDeps,
  req: FastifyRequest,
  after: string | undefined,
  f: EventFilter,
) {
  const lastId = req.headers["last-event-id"];
  if (typeof lastId === "string" && /^\d{1,15}$/.test(lastId)) return Number(lastId);
  if (after) return Number(after);
  return (await latestEvents(deps.db, f, 1))[0]?.seq ?? 0;
}

/**
 * Writes the events after `after` as they are appended, until the browser goes, the server
 * closes, or the session ends (sign-out, expiry) while the page stays open.
 */
async function stream(
  deps: DashboardDeps,
  req: FastifyRequest,
  res: ServerResponse,
  f: EventFilter,
  after: number,
) {
  const pollMs = deps.pollMs ?? 250;
  let open = true;
  const stop = () => {
    open = false;
  };
  res.on("close", stop);
  res.on("error", stop);
  deps.closing.addEventListener("abort", stop, { once: true });
  let idle = 0;
  try {
    while (open) {
      const events = await eventsAfter(deps.db, { ...f, afterSeq: after }, 200);
      for (const e of events) {
        res.write(
          `id: ${e.seq}\nevent: audit\ndata: ${JSON.stringify({ seq: e.seq, type: e.type, request_id: e.request_id ?? null, grant_id: e.grant_id ?? null, html: timelineItem(e).value })}\n\n`,
        );
        after = e.seq;
      }
      if (events.length === 0 && ++idle * pollMs >= 15_000) {
        idle = 0;
        if (!(await deps.sessions.lookup(cookieOf(req)))) break;
        res.write(": keep-alive\n\n");
      }
      if (events.length < 200) await new Promise((r) => setTimeout(r, pollMs));
    }
  } catch (e) {
    deps.log.warn({ err: e }, "dashboard stream ended");
  } finally {
    deps.closing.removeEventListener("abort", stop);
    res.end();
  }
}

/**
 * Live: audit events as they are appended, as Server-Sent Events. Each carries its sequence
 * number as its id, so a reconnect (Last-Event-ID) resumes exactly after the last one seen.
 */
export async function liveRoutes(
  scope: FastifyInstance,
  { deps, hooks }: { deps: DashboardDeps; hooks: SessionHooks },
): Promise<void> {
  scope.get(
    "/dashboard/events",
    {
      ...dashboardDoc("Server-Sent Events the page's script listens to", { type: "text/event-stream" }),
      preHandler: hooks.read,
    },
    async (req, reply) => {
      const q = parseInput(Filters, req.query, "query");
      const f = eventFilter(deps, sessionOf(req), q);
      const after = await startAfter(deps, req, q.after, f);
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
        ...SECURITY_HEADERS,
      });
      // A HEAD request gets the head only: no stream to keep open.
      if (req.method === "HEAD") {
        res.end();
        return reply;
      }
      res.write("retry: 1000\n\n");
      await stream(deps, req, res, f, after);
      return reply;
    },
  );
}
