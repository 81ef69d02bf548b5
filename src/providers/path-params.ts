import type { Operation } from "./spec.js";

/**
 * Path parameters of provider operations: what a value must be to stand for exactly one path
 * segment, whoever decodes it how often, and the one check of the URL sent upstream. Pure.
 *
 * A value is refused when, as written or after any number of percent-decodings (UTF-8 or IIS's
 * `%uXXXX`), or after Unicode compatibility normalisation (NFKC: U+FF0E is a dot there), it
 *  - is empty, or longer than MAX_SEGMENT characters;
 *  - holds `/` or `\` (a separator to some server), or a control character (C0, DEL, C1);
 *  - consists of dots and spaces only (`.`, `..`, `...`), also before a `;` (Tomcat and others
 *    drop `;params` from a segment before removing dot segments: `..;x` is `..` there);
 *  - is not valid Unicode, or its percent-encoding is not valid UTF-8.
 */

export const MAX_SEGMENT = 1024;

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** One lenient decoding, as a server that decodes "what it can" would: undefined when it is not UTF-8. */
function decodeOnce(s: string): string | undefined {
  const u = s.replace(/%u([0-9A-Fa-f]{4})/g, (_, h: string) => String.fromCharCode(Number.parseInt(h, 16)));
  if (!/%[0-9A-Fa-f]{2}/.test(u)) return u;
  const bytes: number[] = [];
  for (let i = 0; i < u.length; ) {
    if (u[i] === "%" && /^[0-9A-Fa-f]{2}$/.test(u.slice(i + 1, i + 3))) {
      bytes.push(Number.parseInt(u.slice(i + 1, i + 3), 16));
      i += 3;
    } else {
      const cp = u.codePointAt(i)!;
      const ch = String.fromCodePoint(cp);
      bytes.push(...Buffer.from(ch, "utf8"));
      i += ch.length;
    }
  }
  try {
    return utf8.decode(Uint8Array.from(bytes));
  } catch {
    return undefined;
  }
}

function formProblem(s: string): string | undefined {
  if (CONTROL.test(s)) return "must not contain control characters (NUL, CR, LF, TAB, DEL, ...)";
  if (s.includes("/") || s.includes("\\"))
    return "must be a single path segment: no / or \\, also not percent-encoded";
  if (/^[.\s]*$/.test(s.split(";", 1)[0]!))
    return "must not be empty or a dot segment ('.', '..'), also not percent-encoded (%2e) or before a ';'";
  return undefined;
}

/** Why `value` cannot be a path segment, or undefined when it can. */
export function segmentProblem(value: string): string | undefined {
  if (value.length === 0) return "must not be empty";
  if (value.length > MAX_SEGMENT) return `must be at most ${MAX_SEGMENT} characters`;
  if (!value.isWellFormed()) return "must be valid Unicode text (it has an unpaired surrogate)";
  let s = value;
  // Each decoding shortens the text, so this ends; the bound is a second lock.
  for (let round = 0; round <= MAX_SEGMENT; round++) {
    const problem = formProblem(s) ?? formProblem(s.normalize("NFKC"));
    if (problem) return problem;
    const next = decodeOnce(s);
    if (next === undefined) return "must be valid UTF-8 once percent-decoded";
    if (next === s) return undefined;
    s = next;
  }
  return "is encoded too many times";
}

/** A path parameter's value as it goes into the path, or a problem naming what is wrong. */
export function pathSegment(value: unknown): { ok: true; value: string } | { ok: false; error: string } {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return { ok: false, error: "must be a finite number" };
    value = String(value);
  }
  if (typeof value !== "string") return { ok: false, error: "must be a string or number" };
  const problem = segmentProblem(value as string);
  return problem ? { ok: false, error: problem } : { ok: true, value: value as string };
}

/**
 * The one check of a URL before it is sent upstream (fail closed): the base's origin, no user
 * info or fragment, and a path that is the base's path followed by the operation's endpoint with
 * each placeholder filled, as one segment, by exactly the call's value; nothing a URL parser
 * normalised away (dot segments) and no placeholder that decodes to anything else.
 */
export function checkUpstreamUrl(
  url: URL,
  base: string,
  op: Pick<Operation, "endpoint" | "pathParams" | "pathPattern">,
  params: Record<string, unknown>,
): { ok: true } | { ok: false; error: string } {
  const fail = (error: string) => ({ ok: false as const, error });
  let b: URL;
  try {
    b = new URL(base);
  } catch {
    return fail("the provider's base URL is not a URL");
  }
  if (url.origin !== b.origin) return fail(`the URL's origin ${url.origin} is not the provider's`);
  // User info only as the operator configured it in the base URL (never from the call).
  if (url.username !== b.username || url.password !== b.password || url.hash)
    return fail("the URL carries user info or a fragment the provider's base URL does not");
  const basePath = b.pathname.replace(/\/+$/, "");
  if (!url.pathname.startsWith(`${basePath}/`))
    return fail("the URL's path is not under the provider's base path");
  const rest = url.pathname.slice(basePath.length);
  const m = op.pathPattern.exec(rest);
  // The pattern accepts a trailing slash from clients; upstream gets the endpoint exactly.
  if (!m || rest.endsWith("/") !== op.endpoint.endsWith("/"))
    return fail(`the URL's path does not match ${op.endpoint}`);
  for (let i = 0; i < op.pathParams.length; i++) {
    const name = op.pathParams[i]!;
    const sent = m[i + 1]!;
    let decoded: string;
    try {
      decoded = decodeURIComponent(sent);
    } catch {
      return fail(`path parameter ${name} is not valid percent-encoding`);
    }
    const want = pathSegment(params[name]);
    if (!want.ok) return fail(`path parameter ${name} ${want.error}`);
    if (decoded !== want.value || sent !== encodeURIComponent(want.value))
      return fail(`path parameter ${name} is not the call's value`);
  }
  return { ok: true };
}
