import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A local stand-in for Stripe's `GET /v1/charges`, so the demo needs no network: it checks the
 * secret key like Stripe does and answers with a page of charges in Stripe's list shape.
 */
export async function startStandInStripe(
  secretKey: string,
): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (req.headers.authorization !== `Bearer ${secretKey}`)
      return json(401, { error: { type: "invalid_request_error", message: "Invalid API Key provided" } });
    const url = new URL(req.url ?? "/", "http://stripe.local");
    if (req.method !== "GET" || url.pathname !== "/v1/charges")
      return json(404, {
        error: {
          type: "invalid_request_error",
          message: `Unrecognized request URL (${req.method}: ${url.pathname})`,
        },
      });
    const limit = Math.min(100, Number(url.searchParams.get("limit") ?? 3) || 3);
    const data = Array.from({ length: limit }, (_, i) => ({
      id: `ch_demo_${String(i + 1).padStart(4, "0")}`,
      object: "charge",
      amount: 1250 * (i + 1),
      currency: "eur",
      paid: true,
      created: 1_777_000_000 + i * 3600,
    }));
    return json(200, { object: "list", url: "/v1/charges", has_more: false, data });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
