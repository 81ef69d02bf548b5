import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A local stand-in for a few Stripe endpoints, so the demo and the tests need no network. It
 * holds Stripe's contract where it matters to a gateway: the secret key (Bearer) is checked, writes
 * must be form-encoded, and an Idempotency-Key is replayed (the same key and body give the first
 * answer again with `Idempotent-Replayed: true`; the same key with another body is an error).
 */
export interface SeenRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export async function startStandInStripe(
  secretKey: string,
  opts: { port?: number; onRequest?: (r: SeenRequest) => void } = {},
): Promise<{
  url: string;
  requests: SeenRequest[];
  created: { refunds: number; payment_intents: number };
  /** The next `n` writes are answered 503 before anything is done, as Stripe does when it is unwell. */
  failNextWrites(n: number): void;
  close(): Promise<void>;
}> {
  let failing = 0;
  const requests: SeenRequest[] = [];
  const created = { refunds: 0, payment_intents: 0 };
  const replays = new Map<string, { body: string; status: number; answer: string }>();
  const server: Server = createServer((req, res) => {
    let raw = "";
    req.setEncoding("utf8");
    req.on("data", (c) => {
      raw += c;
    });
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://stripe.local");
      const seen = { method: req.method ?? "", path: url.pathname, headers: req.headers, body: raw };
      requests.push(seen);
      opts.onRequest?.(seen);
      const json = (status: number, body: unknown, extra: Record<string, string> = {}) => {
        const answer = JSON.stringify(body);
        res.writeHead(status, { "content-type": "application/json", ...extra });
        res.end(answer);
        return answer;
      };
      const error = (status: number, type: string, message: string) =>
        json(status, { error: { type, message } });
      if (req.headers.authorization !== `Bearer ${secretKey}`)
        return error(401, "invalid_request_error", "Invalid API Key provided");
      if (req.method === "GET") {
        const limit = Math.min(100, Number(url.searchParams.get("limit") ?? 3) || 3);
        if (url.pathname === "/v1/charges")
          return json(200, {
            object: "list",
            url: "/v1/charges",
            has_more: false,
            data: Array.from({ length: limit }, (_, i) => ({
              id: `ch_demo_${String(i + 1).padStart(4, "0")}`,
              object: "charge",
              amount: 1250 * (i + 1),
              currency: "eur",
              paid: true,
            })),
          });
        if (url.pathname === "/v1/customers")
          return json(200, {
            object: "list",
            url: "/v1/customers",
            has_more: false,
            data: Array.from({ length: limit }, (_, i) => ({ id: `cus_demo_${i + 1}`, object: "customer" })),
          });
        return error(404, "invalid_request_error", `Unrecognized request URL (GET: ${url.pathname})`);
      }
      if (req.headers["content-type"] !== "application/x-www-form-urlencoded")
        return error(400, "invalid_request_error", "Stripe takes form-encoded bodies");
      if (failing > 0) {
        failing--;
        // Nothing executed and nothing remembered: the same key may be sent again (as with Stripe's 5xx).
        return error(503, "api_error", "Stripe is temporarily unavailable");
      }
      const form = new URLSearchParams(raw);
      const key = req.headers["idempotency-key"];
      if (typeof key === "string") {
        const seen = replays.get(key);
        if (seen && seen.body !== raw)
          return error(
            400,
            "idempotency_error",
            "Keys for idempotent requests can only be used with the same parameters they were first used with",
          );
        if (seen) {
          res.writeHead(seen.status, { "content-type": "application/json", "idempotent-replayed": "true" });
          return res.end(seen.answer);
        }
      }
      let status = 200;
      let answer: string;
      if (req.method === "POST" && url.pathname === "/v1/refunds") {
        if (!form.get("charge") && !form.get("payment_intent")) {
          status = 400;
          answer = error(400, "invalid_request_error", "Must provide charge or payment_intent");
        } else {
          created.refunds++;
          answer = json(200, {
            id: `re_demo_${created.refunds}`,
            object: "refund",
            amount: Number(form.get("amount") ?? 0),
            charge: form.get("charge"),
            metadata: Object.fromEntries(
              [...form].filter(([k]) => k.startsWith("metadata[")).map(([k, v]) => [k.slice(9, -1), v]),
            ),
          });
        }
      } else if (req.method === "POST" && url.pathname === "/v1/payment_intents") {
        created.payment_intents++;
        answer = json(200, {
          id: `pi_demo_${created.payment_intents}`,
          object: "payment_intent",
          amount: Number(form.get("amount")),
          currency: form.get("currency"),
        });
      } else {
        status = 404;
        answer = error(
          404,
          "invalid_request_error",
          `Unrecognized request URL (${req.method}: ${url.pathname})`,
        );
      }
      if (typeof key === "string") replays.set(key, { body: raw, status, answer });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    created,
    failNextWrites(n) {
      failing = n;
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
