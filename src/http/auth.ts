import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyRequest } from "fastify";
import type { AgentIdentity, TokenService } from "../agents/token-service.js";
import { AppError } from "../errors.js";

/** The bearer token of a request, or undefined when there is none. */
export function bearerToken(req: FastifyRequest): string | undefined {
  const h = req.headers.authorization;
  if (!h) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m?.[1];
}

/** Resolves the calling agent from its bearer token, or throws UNAUTHENTICATED. */
export async function requireAgent(
  req: FastifyRequest,
  tokens: Pick<TokenService, "authenticate">,
): Promise<AgentIdentity> {
  const token = bearerToken(req);
  if (!token)
    throw new AppError("UNAUTHENTICATED", "send the agent's token as Authorization: Bearer <token>");
  const identity = await tokens.authenticate(token);
  if (!identity)
    throw new AppError("UNAUTHENTICATED", "the token is not valid (unknown, malformed or revoked)");
  return identity;
}

/** Checks the admin token in constant time, or throws UNAUTHENTICATED. */
export function requireAdmin(req: FastifyRequest, adminToken: string): void {
  const token = bearerToken(req);
  if (!token)
    throw new AppError("UNAUTHENTICATED", "the admin API needs Authorization: Bearer <admin token>");
  const a = createHash("sha256").update(token).digest();
  const b = createHash("sha256").update(adminToken).digest();
  if (!timingSafeEqual(a, b)) throw new AppError("UNAUTHENTICATED", "the admin token is not valid");
}
