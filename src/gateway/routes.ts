import type { FastifyInstance } from "fastify";
import { z } from "zod";
import type { TokenService } from "../agents/token-service.js";
import { requireAgent } from "../http/auth.js";
import { paramsObject, parseInput, safeText } from "../http/validation.js";
import type { Gateway } from "./gateway-service.js";

const AuthorizeBody = z.strictObject({
  action: safeText(256).pipe(
    z
      .string()
      .regex(
        /^[a-z0-9][a-z0-9_-]*:\S+$/,
        "must be service:verb, for example aws:s3:GetObject or stripe:charges:read",
      ),
  ),
  resource: safeText(2048).optional(),
  branch: safeText(256).optional(),
  params: paramsObject.optional(),
});

export interface GatewayRouteDeps {
  gateway: Gateway;
  tokens: Pick<TokenService, "authenticate">;
}

/** `POST /v1/authorize` (agent token): may this agent make this call now? */
export function registerGatewayRoutes(app: FastifyInstance, deps: GatewayRouteDeps): void {
  const doc = {
    tag: "agents",
    summary: "May this agent make this call now? ALLOW or DENY, audited",
    description:
      "A DENY that a grant could lift carries `request_access`: the body to post to /v1/access-requests.",
    auth: ["agent"],
    body: AuthorizeBody,
  } as const;
  app.post("/v1/authorize", { config: { doc } }, async (req) => {
    const identity = await requireAgent(req, deps.tokens);
    const body = parseInput(AuthorizeBody, req.body, "body");
    return deps.gateway.authorize(identity, body);
  });
}
