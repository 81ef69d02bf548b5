import type { FastifyError, FastifyInstance } from "fastify";
import { AppError, asAppError, type ErrorCode, httpStatus, RETRY_AFTER_SECONDS } from "../errors.js";

/**
 * The one place errors become responses: `{ error: { code, message, request_id } }`.
 * AppErrors keep their code; a database that cannot be reached is UNAVAILABLE (503 with
 * Retry-After: the caller tries again shortly), see `asAppError`; fastify's own 4xx errors (bad
 * JSON, wrong content type, body too large) are mapped to codes with readable messages; anything
 * else is logged with its stack and answered as INTERNAL without details.
 */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((thrown: FastifyError | AppError | Error, req, reply) => {
    let code: ErrorCode;
    let message: string;
    let details: Record<string, unknown> | undefined;
    const error = asAppError(thrown) ?? thrown;
    if (error instanceof AppError) {
      code = error.code;
      message = error.message;
      details = error.details;
      if (code === "INTERNAL" || code === "UNAVAILABLE")
        req.log.error({ err: error.cause ?? error }, message);
      else if (error !== thrown) req.log.warn({ err: thrown }, message);
    } else {
      const status = (error as FastifyError).statusCode;
      if (status !== undefined && status >= 400 && status < 500) {
        ({ code, message } = fastifyClientError(error as FastifyError));
      } else {
        req.log.error({ err: error }, "unhandled error");
        code = "INTERNAL";
        message = "internal error; the server log has details under this request id";
      }
    }
    if (code === "UNAUTHENTICATED") reply.header("www-authenticate", 'Bearer realm="butler"');
    if (code === "UNAVAILABLE") reply.header("retry-after", String(RETRY_AFTER_SECONDS));
    reply
      .code(httpStatus(code))
      .send({ error: { code, message, request_id: req.id, ...(details ? { details } : {}) } });
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send({
      error: {
        code: "NOT_FOUND",
        message: `no route ${req.method} ${req.url.split("?")[0]}`,
        request_id: req.id,
      },
    });
  });
}

function fastifyClientError(e: FastifyError): { code: ErrorCode; message: string } {
  switch (e.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return { code: "PAYLOAD_TOO_LARGE", message: "the request body is too large" };
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return {
        code: "UNSUPPORTED_MEDIA_TYPE",
        message: "send the body as JSON (Content-Type: application/json)",
      };
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return { code: "INVALID_INPUT", message: "the JSON body is empty" };
    default:
      if (e instanceof SyntaxError || e.code === "FST_ERR_CTP_INVALID_JSON_BODY") {
        return { code: "INVALID_INPUT", message: `the body is not valid JSON: ${e.message}` };
      }
      if (e.statusCode === 413)
        return { code: "PAYLOAD_TOO_LARGE", message: "the request body is too large" };
      if (e.statusCode === 415) return { code: "UNSUPPORTED_MEDIA_TYPE", message: e.message };
      return { code: "INVALID_INPUT", message: e.message };
  }
}
