import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from "fastify";
import type { Logger } from "../logger.js";
import { installErrorHandler } from "./plugins/error-handler.js";

/** A fastify instance as every Butler listener is set up: errors as JSON, no caching, no sniffing. */
export function createFastify(opts: {
  log: Logger;
  bodyLimitBytes: number;
  trustProxy?: boolean | string | undefined;
}): FastifyInstance {
  const app = Fastify({
    loggerInstance: opts.log as FastifyBaseLogger,
    bodyLimit: opts.bodyLimitBytes,
    trustProxy: opts.trustProxy ?? false,
    // Every decision is in the audit log; per-request access logs would only double the I/O.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
  });
  installErrorHandler(app);
  app.addHook("onSend", async (_req, reply) => {
    reply.header("x-content-type-options", "nosniff");
    if (!reply.hasHeader("cache-control")) reply.header("cache-control", "no-store");
  });
  return app;
}
