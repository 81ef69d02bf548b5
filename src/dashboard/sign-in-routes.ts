import type { FastifyInstance, FastifyReply } from "fastify";
import { AppError } from "../errors.js";
import { parseInput } from "../http/validation.js";
import type { DashboardDeps } from "./deps.js";
import { signInPage } from "./html.js";
import { Filters, LinkForm, TokenForm } from "./inputs.js";
import { dashboardDoc } from "./route-docs.js";
import { cookieOf, type SessionHooks, sameSite, sessionOf, setCookie } from "./session-hooks.js";
import type { DashboardSession } from "./sessions.js";

/** Signing in (with a token or a one-time link) and out. */
export async function signInRoutes(
  scope: FastifyInstance,
  { deps, hooks }: { deps: DashboardDeps; hooks: SessionHooks },
): Promise<void> {
  const sessionSeconds = (s: DashboardSession) =>
    Math.max(1, Math.floor((s.expiresAt.getTime() - deps.clock.now().getTime()) / 1000));

  /**
   * Opens the session (`open` throws an AppError when the credential is refused) and goes to the
   * page the person was sent to sign in from (`next`, a dashboard path), or home.
   */
  async function signIn(
    reply: FastifyReply,
    open: () => Promise<{ cookie: string; session: DashboardSession }>,
    next: string | undefined,
  ) {
    try {
      const r = await open();
      setCookie(deps, reply, r.cookie, sessionSeconds(r.session));
      return reply.redirect(next ?? "/dashboard", 303);
    } catch (e) {
      if (!(e instanceof AppError)) throw e;
      reply.code(401).type("text/html; charset=utf-8");
      return signInPage({ error: e.message, next });
    }
  }

  scope.get("/dashboard/sign-in", dashboardDoc("The sign-in page", { public: true }), async (req, reply) => {
    const q = parseInput(Filters, req.query, "query");
    reply.type("text/html; charset=utf-8");
    return signInPage({ code: q.code, next: q.next });
  });

  scope.post(
    "/dashboard/sign-in",
    dashboardDoc("Sign in with an approver's or auditor's token", { public: true, form: true }),
    async (req, reply) => {
      sameSite(req);
      const b = parseInput(TokenForm, req.body, "form");
      return signIn(reply, () => deps.sessions.signInWithToken(b.token), b.next);
    },
  );

  scope.post(
    "/dashboard/sign-in/link",
    dashboardDoc("Sign in with a one-time link code", { public: true, form: true }),
    async (req, reply) => {
      sameSite(req);
      const b = parseInput(LinkForm, req.body, "form");
      return signIn(reply, () => deps.sessions.signInWithCode(b.code), b.next);
    },
  );

  scope.post(
    "/dashboard/sign-out",
    { ...dashboardDoc("Sign out", { form: true }), preHandler: hooks.change },
    async (req, reply) => {
      await deps.sessions.signOut(cookieOf(req)!, sessionOf(req));
      setCookie(deps, reply, "", 0);
      return reply.redirect("/dashboard/sign-in", 303);
    },
  );
}
