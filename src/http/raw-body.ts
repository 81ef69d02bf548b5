import type { FastifyInstance } from "fastify";

/**
 * Within an encapsulated scope: every body reaches the handlers as text, whatever its content
 * type, so that they decide what is wrong with it (or verify a signature over the exact bytes).
 */
export function rawBodies(scope: FastifyInstance, bodyLimit: number): void {
  scope.removeAllContentTypeParsers();
  scope.addContentTypeParser("*", { parseAs: "string", bodyLimit }, (_req, body, done) => done(null, body));
}
