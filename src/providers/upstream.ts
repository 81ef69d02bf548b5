import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";

/** What an upstream answered. */
export interface UpstreamAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** Why an upstream call did not produce an answer. */
export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly kind: "timeout" | "connect" | "too_large",
  ) {
    super(message);
  }
}

// Connections to providers are kept open and reused: a new TCP (and TLS) handshake per call
// would cost more than everything else the gateway does.
const agents = {
  http: new HttpAgent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64 }),
  https: new HttpsAgent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64 }),
};

/**
 * One HTTP exchange with a provider, with a single deadline for the whole exchange and a cap on
 * the answer's size. Redirects are not followed.
 */
export function callUpstream(
  url: URL,
  opts: {
    method: string;
    headers: Record<string, string>;
    body?: string | undefined;
    timeoutMs: number;
    maxBytes?: number;
  },
): Promise<UpstreamAnswer> {
  const maxBytes = opts.maxBytes ?? 16 * 1024 * 1024;
  const https = url.protocol === "https:";
  return new Promise((resolve, reject) => {
    let settled = false;
    const done = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      fn();
    };
    const req = (https ? httpsRequest : httpRequest)(
      url,
      {
        method: opts.method,
        headers: {
          ...opts.headers,
          ...(opts.body !== undefined ? { "content-length": String(Buffer.byteLength(opts.body)) } : {}),
        },
        agent: https ? agents.https : agents.http,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          if (size > maxBytes) {
            res.destroy();
            done(() => reject(new UpstreamError(`the answer is larger than ${maxBytes} bytes`, "too_large")));
          } else chunks.push(c);
        });
        res.on("end", () =>
          done(() =>
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
          ),
        );
        res.on("error", (e) => done(() => reject(new UpstreamError(e.message, "connect"))));
      },
    );
    const deadline = setTimeout(() => {
      req.destroy();
      done(() => reject(new UpstreamError(`did not answer within ${opts.timeoutMs} ms`, "timeout")));
    }, opts.timeoutMs);
    req.on("error", (e: NodeJS.ErrnoException) =>
      done(() => reject(new UpstreamError(e.code ?? e.message, "connect"))),
    );
    req.end(opts.body);
  });
}
