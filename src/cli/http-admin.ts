import type { AdminOps } from "../admin/admin-service.js";
import { ADMIN_PREFIX, ADMIN_ROUTES, type AdminRoute, wirePath } from "../admin/route-table.js";
import { AppError, type ErrorCode } from "../errors.js";

/**
 * The admin operations of a running server, over its admin API (what the CLI uses while it runs):
 * one function per row of the admin route table, which the server's routes are built from too.
 */
export function httpAdmin(baseUrl: string, adminToken: string): AdminOps {
  async function send(route: AdminRoute, args: unknown[]): Promise<Response> {
    const req = route.request(...args);
    let res: Response;
    try {
      res = await fetch(`${baseUrl}${ADMIN_PREFIX}${wirePath(route, req)}`, {
        method: route.method,
        headers: {
          authorization: `Bearer ${adminToken}`,
          ...(req.body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: req.body === undefined ? undefined : JSON.stringify(req.body),
      });
    } catch (e) {
      throw new AppError(
        "UNAVAILABLE",
        `cannot reach the Butler server at ${baseUrl}: ${(e as Error).cause ?? (e as Error).message}`,
      );
    }
    if (!res.ok) throw await errorOf(res);
    return res;
  }

  const ops: Record<string, unknown> = {};
  for (const route of ADMIN_ROUTES) {
    ops[route.op] = route.ndjson
      ? (...args: unknown[]) => jsonLines(() => send(route, args))
      : async (...args: unknown[]) => {
          const body: unknown = await (await send(route, args)).json();
          return route.unwrap ? route.unwrap(body) : body;
        };
  }
  return ops as unknown as AdminOps;
}

/** The server's error answer as an AppError with its code and message (or the status line). */
async function errorOf(res: Response): Promise<AppError> {
  let code: ErrorCode = "INTERNAL";
  let message = `the server answered ${res.status}`;
  try {
    const j = (await res.json()) as { error?: { code?: ErrorCode; message?: string } };
    if (j.error?.code) code = j.error.code;
    if (j.error?.message) message = j.error.message;
  } catch {
    /* not JSON: keep the status line */
  }
  return new AppError(code, message);
}

/** Reads a JSON-lines answer as it arrives, one parsed line at a time. */
async function* jsonLines(open: () => Promise<Response>): AsyncGenerator<unknown> {
  const res = await open();
  if (!res.body) return;
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of res.body) {
    buf += decoder.decode(chunk as Uint8Array, { stream: true });
    let nl = buf.indexOf("\n");
    while (nl >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line) yield JSON.parse(line);
      nl = buf.indexOf("\n");
    }
  }
  buf += decoder.decode();
  if (buf.trim()) yield JSON.parse(buf);
}
