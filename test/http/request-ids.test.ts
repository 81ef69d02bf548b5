import { Writable } from "node:stream";
import pino from "pino";
import { afterAll, beforeAll, expect, test } from "vitest";
import { AppError } from "../../src/errors.js";
import { createFastify } from "../../src/http/fastify.js";

/** Log lines as written, parsed. */
const lines: Record<string, unknown>[] = [];
const sink = new Writable({
  write(chunk, _enc, done) {
    for (const l of String(chunk).split("\n")) if (l.trim()) lines.push(JSON.parse(l));
    done();
  },
});
const app = createFastify({ log: pino({ level: "info" }, sink), bodyLimitBytes: 1024 });
let url: string;

beforeAll(async () => {
  app.get("/boom", async () => {
    throw new Error("a bug");
  });
  app.get("/refused", async () => {
    throw new AppError("FORBIDDEN", "no");
  });
  url = await app.listen({ host: "127.0.0.1", port: 0 });
});
afterAll(() => app.close());

// Access-request ids are `req_` and 16 characters: an HTTP request id must not look like one.
const HTTP_ID = /^http-[0-9a-f]{16}$/;

test("the request id of an HTTP error starts with http-, and the log line of the error carries the same id", async () => {
  const ids: string[] = [];
  for (const path of ["/boom", "/refused", "/nowhere"]) {
    const res = await fetch(`${url}${path}`);
    const body = (await res.json()) as { error: { request_id: string } };
    expect(body.error.request_id).toMatch(HTTP_ID);
    ids.push(body.error.request_id);
  }
  expect(new Set(ids).size).toBe(3);
  const logged = lines.find((l) => l.msg === "unhandled error");
  expect(logged?.reqId).toBe(ids[0]);
});

test("a request id sent by the client is not taken over (ids stay the server's own)", async () => {
  const res = await fetch(`${url}/refused`, { headers: { "request-id": "req_0123456789abcdef" } });
  const body = (await res.json()) as { error: { request_id: string } };
  expect(body.error.request_id).toMatch(HTTP_ID);
});
