import type { Operation } from "./spec.js";
import type { callUpstream, UpstreamAnswer, UpstreamError } from "./upstream.js";
import type { UpstreamRequest } from "./upstream-request.js";

/** Why an exchange produced no usable answer: 502 (failed) or 504 (timed out), as the agent sees it. */
export interface UpstreamFailure {
  status: 502 | 504;
  reason: string;
}

/** One exchange with a provider, retries included: an answer, or a failure (no answer, or a 5xx one). */
export type Exchange = {
  attempts: number;
  latencyMs: number;
  /**
   * With a failure: the request went out and may have been acted on, and no idempotency key makes
   * sending it again harmless (an MCP tool call that timed out): what the call holds is not given back.
   */
  mayHaveRun?: boolean;
} & (
  | { res: UpstreamAnswer; failure: undefined }
  | { res: UpstreamAnswer | undefined; failure: UpstreamFailure }
);

/**
 * Sends a request, retried once on a connection error or 502/503/504, only when sending twice is
 * harmless (`retriable`: a read, or a write carrying an idempotency key). A timeout or an answer
 * too large is not retried.
 */
export async function sendWithRetry(
  upstream: typeof callUpstream,
  provider: string,
  op: Pick<Operation, "timeoutMs">,
  req: UpstreamRequest,
  retriable: boolean,
): Promise<Exchange> {
  const started = process.hrtime.bigint();
  let attempts = 0;
  let failure: UpstreamFailure | undefined;
  let res: UpstreamAnswer | undefined;
  while (attempts < (retriable ? 2 : 1)) {
    attempts++;
    failure = undefined;
    try {
      res = await upstream(req.url, {
        method: req.method,
        headers: req.headers,
        body: req.body,
        timeoutMs: op.timeoutMs,
      });
      if (res.status >= 500) {
        failure = { status: 502, reason: `${provider} answered HTTP ${res.status}` };
        if ([502, 503, 504].includes(res.status)) continue;
      }
      break;
    } catch (e) {
      const err = e as UpstreamError;
      res = undefined;
      if (err.kind === "timeout") {
        failure = { status: 504, reason: `${provider} did not answer within ${op.timeoutMs} ms` };
        break;
      }
      failure = {
        status: 502,
        reason:
          err.kind === "too_large"
            ? `${provider}: ${err.message}`
            : `could not reach ${provider}: ${err.message}`,
      };
      if (err.kind === "too_large") break;
    }
  }
  const latencyMs = Number(process.hrtime.bigint() - started) / 1e6;
  if (failure) return { res, failure, attempts, latencyMs };
  // Without a failure, the last attempt got an answer.
  return { res: res!, failure: undefined, attempts, latencyMs };
}

const REDACTED = Buffer.from("[redacted]");

/** The forms a credential is sent in, as bytes, made once per credential (the last one asked). */
let needles: { credential: string; forms: Buffer[] } | undefined;

function needlesOf(credential: string): Buffer[] {
  if (needles?.credential !== credential) {
    const forms = new Set([
      credential,
      Buffer.from(credential).toString("base64"),
      JSON.stringify(credential).slice(1, -1),
    ]);
    needles = {
      credential,
      // As short as ordinary text: replacing it would corrupt answers (and it is warned about at start).
      forms: [...forms].map((f) => Buffer.from(f)).filter((b) => b.length >= 8),
    };
  }
  return needles.forms;
}

/**
 * The upstream's answer without the credential Butler sent it (as sent, in Basic auth's base64 or
 * JSON-escaped): an upstream that echoes it must not hand it to the agent, who never has it.
 */
export function withoutCredential(body: Buffer, credential: string): Buffer {
  let out = body;
  for (const needle of needlesOf(credential)) {
    let at = out.indexOf(needle);
    if (at < 0) continue;
    const parts: Buffer[] = [];
    let from = 0;
    for (; at >= 0; at = out.indexOf(needle, from)) {
      parts.push(out.subarray(from, at), REDACTED);
      from = at + needle.length;
    }
    parts.push(out.subarray(from));
    out = Buffer.concat(parts);
  }
  return out;
}

/** A short description of an upstream answer for the audit log: never its data. */
export function summary(body: Buffer, contentType: string | undefined): Record<string, unknown> | undefined {
  if (!contentType?.includes("json") || body.length > 1_000_000) return undefined;
  try {
    const j = JSON.parse(body.toString("utf8")) as Record<string, unknown>;
    if (j === null || typeof j !== "object") return undefined;
    const out: Record<string, unknown> = {};
    if (typeof j.object === "string") out.object = j.object;
    if (typeof j.id === "string" && j.id.length <= 64) out.id = j.id;
    if (Array.isArray(j.data)) out.count = j.data.length;
    const e = j.error as Record<string, unknown> | undefined;
    if (e && typeof e === "object") {
      if (typeof e.type === "string") out.error_type = e.type.slice(0, 64);
      if (typeof e.code === "string") out.error_code = e.code.slice(0, 64);
    }
    return out;
  } catch {
    return undefined;
  }
}
