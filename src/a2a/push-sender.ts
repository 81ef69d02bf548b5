import { type LookupAddress, lookup } from "node:dns";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { RetryLater } from "../outbox/retry-later.js";
import { checkPushUrl, isAllowlisted, isInternalAddress, type PushAllowlist } from "./push-url.js";

export interface PushTarget {
  url: string;
  token: string;
  authScheme: string | null;
  authCredentials: string | null;
}

/** A push the receiver refused for good (4xx other than 408/429): retrying would not help. */
export class PushRefused extends Error {}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/**
 * A DNS lookup for outgoing pushes that refuses internal addresses, so a host name cannot be
 * pointed at the metadata service or the loopback interface after its URL was accepted (DNS
 * rebinding): the address checked is the address connected to.
 */
/** Resolves a host name to all its addresses (node:dns `lookup` by default; passed in by tests). */
export type Resolve = (
  hostname: string,
  callback: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void,
) => void;

const systemResolve: Resolve = (hostname, callback) =>
  lookup(hostname, { all: true }, (e, addresses) => callback(e, addresses ?? []));

const lookupGuard = (resolve: Resolve) =>
  function guard(hostname: string, options: { all?: boolean }, callback: LookupCallback): void {
    resolve(hostname, (e, addresses) => {
      if (e) return callback(e, options.all ? [] : "");
      const list = addresses as LookupAddress[];
      const bad = list.find((a) => isInternalAddress(a.address));
      if (bad || list.length === 0) {
        const refused: NodeJS.ErrnoException = new Error(
          `push notification host ${hostname} resolves to an internal address (${bad?.address ?? "none"})`,
        );
        refused.code = "EPUSHREFUSED";
        return callback(refused, options.all ? [] : "");
      }
      if (options.all) return callback(null, list);
      return callback(null, list[0]!.address, list[0]!.family);
    });
  };

/**
 * Sends one push notification (a StreamResponse JSON body) to an agent's receiver. Throws to ask
 * the outbox for a retry: network errors, timeouts, 5xx, 408 and 429 (with the receiver's
 * Retry-After); other 4xx answers are final.
 */
export async function sendPush(
  target: PushTarget,
  body: unknown,
  allow: PushAllowlist,
  opts: { timeoutMs?: number; resolve?: Resolve } = {},
): Promise<number> {
  const timeoutMs = opts.timeoutMs ?? 5_000;
  const checked = checkPushUrl(target.url, allow);
  if (!checked.ok) throw new PushRefused(checked.error);
  const url = checked.value;
  const payload = Buffer.from(JSON.stringify(body));
  const headers: Record<string, string | number> = {
    "content-type": "application/a2a+json",
    "content-length": payload.length,
    "user-agent": "butler-a2a-push",
  };
  if (target.authScheme && target.authCredentials)
    headers.authorization = `${target.authScheme} ${target.authCredentials}`;
  if (target.token) headers["x-a2a-notification-token"] = target.token;
  const send = url.protocol === "https:" ? httpsRequest : httpRequest;
  return await new Promise<number>((resolve, reject) => {
    // One deadline for the whole exchange: a receiver that trickles its answer byte by byte is
    // cut off like one that never answers. The answer's body is never read, only its status.
    const deadline = setTimeout(
      () => req.destroy(new Error(`push receiver ${url.origin} did not answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const settle = (fn: () => void) => {
      clearTimeout(deadline);
      fn();
    };
    const req = send(
      url,
      {
        method: "POST",
        headers,
        ...(isAllowlisted(url, allow) ? {} : { lookup: lookupGuard(opts.resolve ?? systemResolve) }),
      },
      (res) => {
        const status = res.statusCode ?? 0;
        res.destroy();
        const message = `push receiver ${url.origin} answered HTTP ${status}`;
        if (status >= 200 && status < 300) return settle(() => resolve(status));
        if (status === 429 || status === 503) {
          const after = Number(res.headers["retry-after"]);
          return settle(() =>
            reject(
              Number.isFinite(after) && after > 0
                ? new RetryLater(message, after * 1000)
                : new Error(message),
            ),
          );
        }
        // Redirects are not followed (the target was checked, its redirect was not), and other
        // 4xx answers will not change with time: both are final.
        if ((status >= 300 && status < 400) || (status >= 400 && status < 500 && status !== 408))
          return settle(() => reject(new PushRefused(message)));
        settle(() => reject(new Error(message)));
      },
    );
    req.on("error", (e: NodeJS.ErrnoException) =>
      settle(() =>
        reject(
          e.code === "EPUSHREFUSED"
            ? new PushRefused(e.message)
            : new Error(`push to ${url.origin} failed: ${e.message}`),
        ),
      ),
    );
    req.end(payload);
  });
}
