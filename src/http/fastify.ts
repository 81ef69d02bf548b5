import { randomBytes } from "node:crypto";
import { STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from "fastify";
import type { Logger } from "../logger.js";
import { installErrorHandler } from "./error-handler.js";

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
    clientErrorHandler,
    // Ids of our own (a client's header is not taken over), and unlike fastify's `req-1i` they
    // cannot be mistaken for an access-request id (`req_…`) in an error body or a log line.
    requestIdHeader: false,
    genReqId: httpRequestId,
    // A route's JSON Schema (compiled once, as a fast first check before zod: see the gateway's
    // routes) judges the body as it came: nothing is coerced, filled in or silently dropped.
    ajv: { customOptions: { coerceTypes: false, useDefaults: false, removeAdditional: false } },
  });
  installErrorHandler(app);
  // A callback hook, not an async one: it runs on every answer, decisions included, and an async
  // hook costs a promise and a turn of the microtask queue each time.
  app.addHook("onSend", (_req, reply, _payload, done) => {
    reply.header("x-content-type-options", "nosniff");
    if (!reply.hasHeader("cache-control")) reply.header("cache-control", "no-store");
    done();
  });
  return app;
}

/**
 * A request id as it appears in error bodies (`request_id`) and log lines (`reqId`): `http-` and 16
 * hex digits, a random prefix drawn once per process and a counter (instances do not clash, and
 * every request, the decision path's included, pays a string, not a random draw).
 */
const ID_PREFIX = randomBytes(4).toString("hex");
let requestCount = 0;
function httpRequestId(): string {
  requestCount = (requestCount + 1) % 0x1_0000_0000;
  return `http-${ID_PREFIX}${requestCount.toString(16).padStart(8, "0")}`;
}

/**
 * Requests Node's HTTP parser refuses (headers too large, a malformed request line, a request
 * too slow to arrive) are answered here, on the raw socket, before any route sees them. As
 * fastify's own handler does, but a HEAD request (or one whose method cannot be told) never gets
 * a body: its client would read the body as the start of the next answer.
 */
function clientErrorHandler(error: Error, socket: Socket): void {
  const err = error as NodeJS.ErrnoException & { rawPacket?: unknown };
  if (err.code === "ECONNRESET" || socket.destroyed) return;
  const status =
    err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : err.code === "HPE_HEADER_OVERFLOW" ? 431 : 400;
  const message =
    status === 408
      ? "the request took too long to arrive"
      : status === 431
        ? "the request's headers are too large"
        : "the request is not valid HTTP";
  const raw = Buffer.isBuffer(err.rawPacket) ? err.rawPacket.subarray(0, 16).toString("latin1") : "";
  const method = /^([A-Z]+) /.exec(raw)?.[1];
  const body =
    method && method !== "HEAD" ? JSON.stringify({ error: { code: "INVALID_INPUT", message } }) : "";
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\n` +
        (body
          ? `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
          : "Content-Length: 0\r\n\r\n"),
    );
  }
  socket.destroy(err);
}
