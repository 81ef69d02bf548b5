import { readFileSync } from "node:fs";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import type { AdminOps } from "../admin/admin-service.js";
import { rowToLine } from "../audit/audit-log.js";
import { canonicalJson } from "../audit/chain.js";
import { story } from "../audit/story.js";
import type { VerifyResult } from "../audit/verify.js";
import type { ApprovalCard } from "../butler/approval-card.js";
import type { Butler } from "../butler/butler-service.js";
import type { Clock } from "../clock.js";
import type { Db } from "../db/client.js";
import { REQUEST_STATUSES } from "../db/schema.js";
import { AppError } from "../errors.js";
import { parseInput, safeText } from "../http/validation.js";
import type { Logger } from "../logger.js";
import { policyDiff } from "../policy/effective.js";
import { type CompiledProject, compileGlob } from "../policy/index.js";
import { type EventFilter, eventsAfter, exportRows, latestEvents } from "./events.js";
import {
  auditPage,
  grantsPage,
  type Html,
  historyPage,
  type PolicyView,
  policiesPage,
  replayPage,
  requestCard,
  requestsFragment,
  requestsPage,
  signInPage,
  timelineItem,
  timelinePage,
  type Viewer,
} from "./html.js";
import { csrfMatches, type DashboardSession, type DashboardSessions } from "./sessions.js";

const COOKIE = "butler_session";
const ASSETS_DIR = fileURLToPath(new URL("../../public/dashboard/", import.meta.url));
const ASSETS: Record<string, string> = {
  "dashboard.css": "text/css; charset=utf-8",
  "dashboard.js": "text/javascript; charset=utf-8",
};

/**
 * The strictest policy the pages work under: scripts and styles only from /dashboard/assets, no
 * inline code, no framing, forms only to this origin.
 */
const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
};

export interface DashboardDeps {
  db: Db;
  sessions: DashboardSessions;
  butler: Pick<
    Butler,
    | "list"
    | "listCards"
    | "review"
    | "listGrants"
    | "revokeGrant"
    | "grantProject"
    | "projectsOfApprover"
    | "mayDecide"
  >;
  projects: () => ReadonlyMap<string, CompiledProject>;
  clock: Clock;
  admin: Pick<AdminOps, "showPolicy" | "policyHistory" | "policyRevision">;
  verifyAudit: () => Promise<VerifyResult>;
  /** Whether cookies get `Secure` (the server is reached over https). */
  secureCookies: boolean;
  /** Aborted when the server begins to close: live streams end. */
  closing: AbortSignal;
  log: Logger;
  /** How often a live stream looks for new audit events. */
  pollMs?: number;
}

const id = z.string().regex(/^req_[a-z0-9]{16}$/, "must be an access request id");
const grantId = z.string().regex(/^[a-z0-9_:.-]{1,64}$/i, "must be a grant id");
const ApproveForm = z.object({
  _csrf: z.string().optional(),
  ttl: z
    .string()
    .regex(/^\d{1,9}$/)
    .optional(),
});
const DenyForm = z.object({ _csrf: z.string().optional(), reason: safeText(1000).optional() });
const name = z
  .string()
  .max(128)
  .regex(/^[A-Za-z0-9._@:-]*$/, "letters, digits and . _ @ : -");
const day = z.string().regex(/^(\d{4}-\d{2}-\d{2})?$/, "a date such as 2026-05-01");
const Filters = z.object({
  action: z.string().max(256).optional(),
  approver: name.optional(),
  status: z.enum(["", ...REQUEST_STATUSES]).optional(),
  since: day.optional(),
  until: day.optional(),
  from: z
    .string()
    .regex(/^\d{1,9}$/)
    .optional(),
  to: z
    .string()
    .regex(/^\d{1,9}$/)
    .optional(),
  agent: name.optional(),
  project: name.optional(),
  type: z
    .string()
    .max(64)
    .regex(/^[a-z0-9_.*]*$/, "letters, digits, _ . and a trailing *")
    .optional(),
  state: z.enum(["active", "all", "expired", "revoked"]).optional(),
  event: z
    .string()
    .regex(/^evt_[a-z0-9]{16}$/)
    .optional(),
  grant: grantId.optional(),
  before: z
    .string()
    .regex(/^\d{1,15}$/)
    .optional(),
  after: z
    .string()
    .regex(/^\d{1,15}$/)
    .optional(),
  code: z.string().max(64).optional(),
});

function cookieOf(req: FastifyRequest): string | undefined {
  const header = req.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === COOKIE) return part.slice(eq + 1).trim();
  }
  return undefined;
}

const blank = (s: string | undefined) => (s === "" ? undefined : s);

export async function registerDashboard(app: FastifyInstance, deps: DashboardDeps): Promise<void> {
  const assets = new Map(
    Object.entries(ASSETS).map(([file, type]) => [file, { type, body: readFileSync(ASSETS_DIR + file) }]),
  );
  const pollMs = deps.pollMs ?? 250;
  let verified: { at: number; result: VerifyResult } | undefined;

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

    async function session(req: FastifyRequest): Promise<DashboardSession | undefined> {
      return deps.sessions.lookup(cookieOf(req));
    }
    const viewerOf = (s: DashboardSession): Viewer => ({ approver: s.approver, role: s.role, csrf: s.csrf });

    /** A page: the session, or a redirect to sign in. */
    async function pageSession(req: FastifyRequest, reply: FastifyReply) {
      const s = await session(req);
      if (!s) {
        reply.redirect("/dashboard/sign-in", 303);
        return undefined;
      }
      return s;
    }

    /** A state change: a session, the session's CSRF token, and a same-origin request. */
    /** Browsers say where a request comes from; another site may not sign anyone in or change anything. */
    function sameSite(req: FastifyRequest): void {
      const site = req.headers["sec-fetch-site"];
      if (site !== undefined && site !== "same-origin" && site !== "none")
        throw new AppError("FORBIDDEN", "cross-site requests cannot change anything here");
    }

    async function changeSession(req: FastifyRequest): Promise<DashboardSession> {
      sameSite(req);
      const s = await session(req);
      if (!s) throw new AppError("UNAUTHENTICATED", "sign in to the dashboard first");
      const sent = req.headers["x-csrf-token"] ?? (req.body as Record<string, unknown> | undefined)?._csrf;
      if (!csrfMatches(s, sent))
        throw new AppError("FORBIDDEN", "the CSRF token is missing or wrong; reload the page and try again");
      return s;
    }

    /** Projects a viewer may see; undefined: all (auditors). */
    function visible(s: DashboardSession): string[] | undefined {
      return s.role === "auditor" ? undefined : deps.butler.projectsOfApprover(s.approver);
    }

    /** Whether the viewer may decide this card (buttons shown): the Butler's own rule. */
    const canDecide = (s: DashboardSession, c: ApprovalCard): boolean =>
      s.role === "approver" && deps.butler.mayDecide(s.approver, c);
    const wantsJson = (req: FastifyRequest) => String(req.headers.accept ?? "").includes("application/json");

    function setCookie(reply: FastifyReply, value: string, maxAge: number) {
      reply.header(
        "set-cookie",
        `${COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${deps.secureCookies ? "; Secure" : ""}`,
      );
    }

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
      return list.map(({ card: c }) => requestCard(c, viewerOf(s), canDecide(s, c)));
    }

    scope.get("/dashboard/assets/:file", async (req, reply) => {
      const a = assets.get((req.params as { file: string }).file);
      if (!a) throw new AppError("NOT_FOUND", "no such asset");
      reply.header("content-type", a.type).header("cache-control", "public, max-age=300");
      return reply.send(a.body);
    });

    scope.get("/dashboard/sign-in", async (req, reply) => {
      const q = parseInput(Filters, req.query, "query");
      reply.type("text/html; charset=utf-8");
      return signInPage({ code: q.code });
    });

    const signedIn = (reply: FastifyReply, r: { cookie: string; session: DashboardSession }, ttl: number) => {
      setCookie(reply, r.cookie, ttl);
      return reply.redirect("/dashboard", 303);
    };
    const sessionSeconds = (s: DashboardSession) =>
      Math.max(1, Math.floor((s.expiresAt.getTime() - deps.clock.now().getTime()) / 1000));
    const signInFailed = (reply: FastifyReply, e: unknown, code?: string) => {
      if (!(e instanceof AppError)) throw e;
      reply.code(401).type("text/html; charset=utf-8");
      return signInPage({ error: e.message, code });
    };

    scope.post("/dashboard/sign-in", async (req, reply) => {
      sameSite(req);
      const b = parseInput(z.object({ token: z.string().max(200) }), req.body, "form");
      try {
        const r = await deps.sessions.signInWithToken(b.token);
        return signedIn(reply, r, sessionSeconds(r.session));
      } catch (e) {
        return signInFailed(reply, e);
      }
    });

    scope.post("/dashboard/sign-in/link", async (req, reply) => {
      sameSite(req);
      const b = parseInput(z.object({ code: z.string().max(64) }), req.body, "form");
      try {
        const r = await deps.sessions.signInWithCode(b.code);
        return signedIn(reply, r, sessionSeconds(r.session));
      } catch (e) {
        return signInFailed(reply, e);
      }
    });

    scope.post("/dashboard/sign-out", async (req, reply) => {
      const s = await changeSession(req);
      await deps.sessions.signOut(cookieOf(req)!, s);
      setCookie(reply, "", 0);
      return reply.redirect("/dashboard/sign-in", 303);
    });

    scope.get("/dashboard", async (req, reply) => {
      const s = await pageSession(req, reply);
      if (!s) return reply;
      reply.type("text/html; charset=utf-8");
      return requestsPage(await cards(s), viewerOf(s));
    });

    scope.get("/dashboard/fragments/requests", async (req, reply) => {
      const s = await session(req);
      if (!s) throw new AppError("UNAUTHENTICATED", "sign in to the dashboard first");
      reply.type("text/html; charset=utf-8");
      return requestsFragment(await cards(s)).value;
    });

    async function decide(req: FastifyRequest, reply: FastifyReply, verdict: "approve" | "deny") {
      const s = await changeSession(req);
      const rid = parseInput(id, (req.params as { id: string }).id, "request id");
      if (s.role !== "approver") throw new AppError("FORBIDDEN", "auditors can read, not decide");
      let result: Awaited<ReturnType<Butler["review"]>>;
      if (verdict === "approve") {
        const b = parseInput(ApproveForm, req.body ?? {}, "form");
        result = await deps.butler.review({ approver: s.approver, channel: "dashboard" }, rid, "approve", {
          ttl: b.ttl === undefined ? undefined : Number(b.ttl),
        });
      } else {
        const b = parseInput(DenyForm, req.body ?? {}, "form");
        result = await deps.butler.review({ approver: s.approver, channel: "dashboard" }, rid, "deny", {
          reason: blank(b.reason?.trim()),
        });
      }
      if (!wantsJson(req)) return reply.redirect(`/dashboard#req-${rid}`, 303);
      const c = result.card;
      return {
        outcome: result.outcome,
        html: requestCard(c, viewerOf(s), canDecide(s, c)).value,
      };
    }
    scope.post("/dashboard/requests/:id/approve", (req, reply) => decide(req, reply, "approve"));
    scope.post("/dashboard/requests/:id/deny", (req, reply) => decide(req, reply, "deny"));

    scope.get("/dashboard/grants", async (req, reply) => {
      const s = await pageSession(req, reply);
      if (!s) return reply;
      const q = parseInput(Filters, req.query, "query");
      const projects = visible(s);
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
        {
          agent: q.agent,
          project: q.project,
          state: q.state,
        },
      );
    });

    scope.post("/dashboard/grants/:id/revoke", async (req, reply) => {
      const s = await changeSession(req);
      const gid = parseInput(grantId, (req.params as { id: string }).id, "grant id");
      if (s.role !== "approver") throw new AppError("FORBIDDEN", "auditors can read, not revoke");
      const project = await deps.butler.grantProject(gid);
      if (!deps.butler.projectsOfApprover(s.approver).includes(project))
        throw new AppError("FORBIDDEN", `you are not an approver for ${project}`);
      const r = await deps.butler.revokeGrant(gid, `approver:${s.approver}`, "revoked in the dashboard");
      if (!wantsJson(req)) return reply.redirect("/dashboard/grants", 303);
      return r;
    });

    scope.get("/dashboard/history", async (req, reply) => {
      const s = await pageSession(req, reply);
      if (!s) return reply;
      const q = parseInput(Filters, req.query, "query");
      const projects = visible(s);
      const action = blank(q.action);
      // The same glob syntax as policies (stripe:*, aws:s3:Get*).
      const glob = action ? compileGlob(action) : undefined;
      if (glob && !glob.ok)
        throw new AppError("INVALID_INPUT", `action: not a valid pattern: it ${glob.error}`);
      const actionMatch = glob?.ok ? glob.value : undefined;
      const since = q.since ? Date.parse(`${q.since}T00:00:00Z`) : undefined;
      const until = q.until ? Date.parse(`${q.until}T23:59:59.999Z`) : undefined;
      const rows = (
        await deps.butler.list({
          limit: 1000,
          ...(s.role === "auditor" ? {} : { approver: s.approver }),
          ...(blank(q.status) ? { status: q.status as "pending" } : {}),
        })
      ).filter((r) => {
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
      });
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
    });

    scope.get("/dashboard/policies", async (req, reply) => {
      const s = await pageSession(req, reply);
      if (!s) return reply;
      const q = parseInput(Filters, req.query, "query");
      const projects = visible(s) ?? [...deps.projects().keys()];
      const views: PolicyView[] = [];
      for (const project of [...projects].sort()) {
        const effective = await deps.admin.showPolicy(project).catch(() => undefined);
        if (!effective) continue;
        const revisions = await deps.admin.policyHistory(project);
        const view: PolicyView = {
          project,
          yaml: effective.yaml,
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
        views.push(view);
      }
      reply.type("text/html; charset=utf-8");
      return policiesPage(views, viewerOf(s));
    });

    scope.get("/dashboard/replay", async (req, reply) => {
      const s = await pageSession(req, reply);
      if (!s) return reply;
      const q = parseInput(Filters, req.query, "query");
      const agent = blank(q.agent);
      if (!agent) throw new AppError("INVALID_INPUT", "agent: say whose session to replay (?agent=…)");
      const lines: { seq: number; eventId: string; ts: string; text: string }[] = [];
      for await (const r of exportRows(deps.db, { projects: visible(s), agent, project: blank(q.project) })) {
        const line = rowToLine(r);
        lines.push({ seq: line.seq, eventId: line.event_id, ts: line.ts, text: story(line) });
        if (lines.length >= 5000) break;
      }
      reply.type("text/html; charset=utf-8");
      return replayPage(agent, lines, viewerOf(s));
    });

    function eventFilter(s: DashboardSession, q: z.infer<typeof Filters>): EventFilter {
      return {
        projects: visible(s),
        agent: blank(q.agent),
        project: blank(q.project),
        type: blank(q.type),
        about: blank(q.grant),
        eventId: blank(q.event),
      };
    }

    scope.get("/dashboard/timeline", async (req, reply) => {
      const s = await pageSession(req, reply);
      if (!s) return reply;
      const q = parseInput(Filters, req.query, "query");
      const events = await latestEvents(deps.db, eventFilter(s, q), 100);
      reply.type("text/html; charset=utf-8");
      return timelinePage(events, viewerOf(s), { agent: q.agent, project: q.project });
    });

    scope.get("/dashboard/audit", async (req, reply) => {
      const s = await pageSession(req, reply);
      if (!s) return reply;
      const q = parseInput(Filters, req.query, "query");
      const f = { ...eventFilter(s, q), beforeSeq: q.before ? Number(q.before) : undefined };
      const events = await latestEvents(deps.db, f, 100);
      if (!verified || deps.clock.now().getTime() - verified.at > 30_000)
        verified = { at: deps.clock.now().getTime(), result: await deps.verifyAudit() };
      const v = verified.result;
      const chain = v.ok
        ? {
            ok: true,
            text: `verified up to sequence ${v.verifiedThrough} (${v.count} events, checked ${new Date(verified.at).toISOString()})`,
          }
        : { ok: false, text: `first broken link at sequence ${v.break?.seq}: ${v.break?.problem}` };
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
        chain,
        { agent: q.agent, project: q.project, type: q.type },
        older,
      );
    });

    scope.get("/dashboard/audit/export.jsonl", async (req, reply) => {
      const s = await session(req);
      if (!s) throw new AppError("UNAUTHENTICATED", "sign in to the dashboard first");
      const q = parseInput(Filters, req.query, "query");
      reply
        .header("content-type", "application/x-ndjson; charset=utf-8")
        .header("content-disposition", 'attachment; filename="butler-audit.jsonl"');
      if (req.method === "HEAD") return reply.send();
      const rows = exportRows(deps.db, eventFilter(s, q));
      // A stream (fastify serialises a bare generator as `{}`), read page by page: memory stays
      // flat however long the log is. The same lines as the admin API's export.
      return reply.send(
        Readable.from(
          (async function* () {
            for await (const r of rows) yield `${canonicalJson(rowToLine(r))}\n`;
          })(),
        ),
      );
    });

    /**
     * Live: audit events as they are appended, as Server-Sent Events. Each carries its sequence
     * number as its id, so a reconnect (Last-Event-ID) resumes exactly after the last one seen.
     */
    scope.get("/dashboard/events", async (req, reply) => {
      const s = await session(req);
      if (!s) throw new AppError("UNAUTHENTICATED", "sign in to the dashboard first");
      const q = parseInput(Filters, req.query, "query");
      const lastId = req.headers["last-event-id"];
      let after =
        typeof lastId === "string" && /^\d{1,15}$/.test(lastId)
          ? Number(lastId)
          : q.after
            ? Number(q.after)
            : undefined;
      const f = eventFilter(s, q);
      if (after === undefined) after = (await latestEvents(deps.db, f, 1))[0]?.seq ?? 0;
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
          // The session may end (sign-out, expiry) while the page stays open.
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
      return reply;
    });
  });
}
