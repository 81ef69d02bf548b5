import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { ApprovalCard } from "../butler/approval-card.js";
import { AppError } from "../errors.js";
import type { DashboardDeps } from "./deps.js";
import type { Viewer } from "./html.js";
import { NextPage } from "./inputs.js";
import { csrfMatches, type DashboardSession } from "./sessions.js";

/**
 * Who is asking, set up once per request by a route's `preHandler` (one of `sessionHooks`) and
 * read by its handler with `sessionOf`.
 */

const COOKIE = "butler_session";

/**
 * The strictest policy the pages work under: scripts and styles only from /dashboard/assets, no
 * inline code, no framing, forms only to this origin.
 */
export const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
};

export function cookieOf(req: FastifyRequest): string | undefined {
  const header = req.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === COOKIE) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export function setCookie(
  deps: Pick<DashboardDeps, "secureCookies">,
  reply: FastifyReply,
  value: string,
  maxAge: number,
) {
  reply.header(
    "set-cookie",
    `${COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${deps.secureCookies ? "; Secure" : ""}`,
  );
}

/** Browsers say where a request comes from; another site may not sign anyone in or change anything. */
export function sameSite(req: FastifyRequest): void {
  const site = req.headers["sec-fetch-site"];
  if (site !== undefined && site !== "same-origin" && site !== "none")
    throw new AppError("FORBIDDEN", "cross-site requests cannot change anything here");
}

const established = new WeakMap<FastifyRequest, DashboardSession>();

/** The session a route's hook set up. */
export function sessionOf(req: FastifyRequest): DashboardSession {
  const s = established.get(req);
  if (!s) throw new AppError("UNAUTHENTICATED", "sign in to the dashboard first");
  return s;
}

/** The three ways a route admits its caller; each is a `preHandler`. */
export function sessionHooks(deps: Pick<DashboardDeps, "sessions">) {
  const lookup = (req: FastifyRequest) => deps.sessions.lookup(cookieOf(req));
  const unauthenticated = () => new AppError("UNAUTHENTICATED", "sign in to the dashboard first");
  return {
    /** A page: the session, or a redirect to sign in. */
    page: async (req: FastifyRequest, reply: FastifyReply) => {
      const s = await lookup(req);
      if (!s) {
        // Back to this page after signing in (a link from a chat card, a bookmark), when it is
        // one sign-in accepts as `next` (a long or odd URL would only make a huge Location header).
        const back =
          req.url !== "/dashboard" && NextPage.safeParse(req.url).success
            ? `?next=${encodeURIComponent(req.url)}`
            : "";
        return reply.redirect(`/dashboard/sign-in${back}`, 303);
      }
      established.set(req, s);
    },
    /** A fragment, stream or download the page's script fetches: the session, or 401. */
    read: async (req: FastifyRequest) => {
      const s = await lookup(req);
      if (!s) throw unauthenticated();
      established.set(req, s);
    },
    /** A state change: a same-origin request, a session, and the session's CSRF token. */
    change: async (req: FastifyRequest) => {
      sameSite(req);
      const s = await lookup(req);
      if (!s) throw unauthenticated();
      const sent = req.headers["x-csrf-token"] ?? (req.body as Record<string, unknown> | undefined)?._csrf;
      if (!csrfMatches(s, sent))
        throw new AppError("FORBIDDEN", "the CSRF token is missing or wrong; reload the page and try again");
      established.set(req, s);
    },
  };
}

export type SessionHooks = ReturnType<typeof sessionHooks>;

/** The state changes anyone may post without a session: signing in (they check the origin themselves). */
const OPEN_POSTS = new Set(["/dashboard/sign-in", "/dashboard/sign-in/link"]);

/**
 * Refuses, when a route is registered, any state-changing route of `scope` that is not admitted
 * by `change` (same origin, session, CSRF token): a route added without it stops the server from
 * starting instead of shipping without CSRF protection.
 */
export function requireChangeGuard(scope: FastifyInstance, change: SessionHooks["change"]): void {
  scope.addHook("onRoute", (route) => {
    const methods = [route.method].flat();
    if (methods.every((m) => m === "GET" || m === "HEAD") || OPEN_POSTS.has(route.url)) return;
    const pre = [route.preHandler ?? []].flat();
    if (!pre.includes(change as never))
      throw new Error(
        `dashboard route ${methods.join(",")} ${route.url} changes state without the change guard`,
      );
  });
}

export const viewerOf = (s: DashboardSession): Viewer => ({
  approver: s.approver,
  role: s.role,
  csrf: s.csrf,
});

/** Projects a viewer may see; undefined: all (auditors). */
export function visible(deps: Pick<DashboardDeps, "butler">, s: DashboardSession): string[] | undefined {
  return s.role === "auditor" ? undefined : deps.butler.projectsOfApprover(s.approver);
}

/** Whether the viewer may decide this card (buttons shown): the Butler's own rule. */
export const canDecide = (
  deps: Pick<DashboardDeps, "butler">,
  s: DashboardSession,
  c: ApprovalCard,
): boolean => s.role === "approver" && deps.butler.mayDecide(s.approver, c);

export const wantsJson = (req: FastifyRequest) =>
  String(req.headers.accept ?? "").includes("application/json");
