import type { FastifyInstance } from "fastify";
import { z } from "zod";
import type { TokenService } from "../agents/token-service.js";
import { requireAgent } from "../http/auth.js";
import { paramsObject, paramsProblem, parseInput, safeText, storable } from "../http/validation.js";
import type { AuthorizeInput, Gateway } from "./gateway-service.js";

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

/**
 * The same body as JSON Schema, which fastify compiles (ajv) when the route is registered: on the
 * decision path a valid body is checked in a fraction of zod's time. It is a first check only: what
 * it accepts is then checked for what JSON Schema cannot say (unpaired surrogates, NUL, the depth
 * and size of params), and anything refused by either goes through `AuthorizeBody`, whose verdict
 * and messages are the answer. So this accepts nothing that zod refuses (both count lengths in
 * characters, that is code points).
 */
const AUTHORIZE_BODY_JSON_SCHEMA = {
  type: "object",
  additionalProperties: false,
  required: ["action"],
  properties: {
    action: { type: "string", maxLength: 256, pattern: "^[a-z0-9][a-z0-9_-]*:\\S+$" },
    resource: { type: "string", maxLength: 2048 },
    branch: { type: "string", maxLength: 256 },
    params: { type: "object" },
  },
} as const;

/** The checks of `AuthorizeBody` that the JSON Schema does not make, on a body it accepted. */
function passesTextChecks(b: AuthorizeInput): boolean {
  return (
    storable(b.action) &&
    (b.resource === undefined || storable(b.resource)) &&
    (b.branch === undefined || storable(b.branch)) &&
    (b.params === undefined || paramsProblem(b.params) === undefined)
  );
}

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
  app.post(
    "/v1/authorize",
    { config: { doc }, schema: { body: AUTHORIZE_BODY_JSON_SCHEMA }, attachValidation: true },
    async (req) => {
      const identity = await requireAgent(req, deps.tokens);
      const body =
        req.validationError === undefined && passesTextChecks(req.body as AuthorizeInput)
          ? (req.body as AuthorizeInput)
          : parseInput(AuthorizeBody, req.body, "body");
      return deps.gateway.authorize(identity, body);
    },
  );
}
