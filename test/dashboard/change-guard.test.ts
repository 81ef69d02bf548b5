import Fastify from "fastify";
import { expect, test } from "vitest";
import { requireChangeGuard, sessionHooks } from "../../src/dashboard/session-hooks.js";

/** Every state-changing dashboard route is admitted by the change guard, or the server does not start. */
const hooks = sessionHooks({ sessions: {} as never });

test.each([
  ["a POST with the change guard", "POST", "/dashboard/x", [hooks.change], true],
  ["signing in, which checks its own origin", "POST", "/dashboard/sign-in", undefined, true],
  ["a POST admitted only as a read", "POST", "/dashboard/x", [hooks.read], false],
  ["a POST with no guard at all", "POST", "/dashboard/x", undefined, false],
  ["a DELETE with no guard", "DELETE", "/dashboard/x", undefined, false],
  ["a page", "GET", "/dashboard/x", [hooks.page], true],
] as const)("%s", async (_name, method, url, preHandler, allowed) => {
  const app = Fastify();
  requireChangeGuard(app, hooks.change);
  const register = () =>
    app.route({
      method,
      url,
      ...(preHandler ? { preHandler: [...preHandler] } : {}),
      handler: async () => "ok",
    });
  if (allowed) expect(register).not.toThrow();
  else expect(register).toThrow(/changes state without the change guard/);
  await app.close();
});
