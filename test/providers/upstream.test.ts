import { createServer } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { expect, test } from "vitest";
import { callUpstream, UpstreamError } from "../../src/providers/upstream.js";

test("an upstream that does not answer in time, or answers too much, is an UpstreamError of the right kind", async () => {
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    if (req.url === "/slow") return; // never answers
    if (req.url === "/huge") {
      res.writeHead(200);
      res.end(Buffer.alloc(4096, 120));
      return;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ method: req.method, auth: req.headers.authorization }));
  });
  server.on("connection", (s) => sockets.add(s));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const slow = await callUpstream(new URL(`${base}/slow`), {
      method: "GET",
      headers: {},
      timeoutMs: 200,
    }).catch((e: unknown) => e);
    expect(slow).toBeInstanceOf(UpstreamError);
    expect(slow).toMatchObject({ kind: "timeout", message: "did not answer within 200 ms" });
    const huge = await callUpstream(new URL(`${base}/huge`), {
      method: "GET",
      headers: {},
      timeoutMs: 2000,
      maxBytes: 1024,
    }).catch((e: unknown) => e);
    expect(huge).toMatchObject({ kind: "too_large" });
    const ok = await callUpstream(new URL(`${base}/ok`), {
      method: "POST",
      headers: { authorization: "Bearer k" },
      body: "a=1",
      timeoutMs: 2000,
    });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body.toString())).toEqual({ method: "POST", auth: "Bearer k" });
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  }
});
