import { createHmac, timingSafeEqual } from "node:crypto";
import { err, ok, type Result } from "../result.js";

/**
 * Signature checks of inbound provider webhooks (pure): Stripe's `Stripe-Signature`
 * (`t=<seconds>,v1=<hex>`, HMAC-SHA256 over `<t>.<body>`) and Revolut's `Revolut-Signature`
 * (`v1=<hex>`, HMAC-SHA256 over `v1.<Revolut-Request-Timestamp>.<body>`, timestamp in ms).
 */

type Headers = Record<string, string | string[] | undefined>;

const header = (h: Headers, name: string): string | undefined => {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
};

function hexEqual(a: string, b: string): boolean {
  if (!/^[0-9a-f]+$/i.test(a) || a.length !== b.length) return false;
  return timingSafeEqual(Buffer.from(a, "hex"), Buffer.from(b, "hex"));
}

const hmac = (secret: string, text: string) => createHmac("sha256", secret).update(text).digest("hex");

export function verifyWebhook(
  scheme: "stripe" | "revolut",
  secret: string,
  headers: Headers,
  body: string,
  nowMs: number,
  toleranceSeconds: number,
): Result<void, string> {
  if (scheme === "stripe") {
    const sig = header(headers, "stripe-signature");
    if (!sig) return err("no Stripe-Signature header");
    const parts = sig.split(",").map((p) => p.trim().split("=", 2) as [string, string | undefined]);
    const t = parts.find(([k]) => k === "t")?.[1];
    const v1 = parts.filter(([k]) => k === "v1").map(([, v]) => v ?? "");
    if (!t || !/^\d{1,12}$/.test(t) || v1.length === 0)
      return err("the Stripe-Signature header is malformed");
    if (Math.abs(nowMs / 1000 - Number(t)) > toleranceSeconds)
      return err(`the signature's timestamp is more than ${toleranceSeconds} s away from now`);
    const expected = hmac(secret, `${t}.${body}`);
    return v1.some((v) => hexEqual(v, expected)) ? ok(undefined) : err("the signature does not match");
  }
  const ts = header(headers, "revolut-request-timestamp");
  const sig = header(headers, "revolut-signature");
  if (!ts || !sig) return err("no Revolut-Request-Timestamp or Revolut-Signature header");
  if (!/^\d{1,15}$/.test(ts)) return err("the Revolut-Request-Timestamp header is malformed");
  if (Math.abs(nowMs - Number(ts)) > toleranceSeconds * 1000)
    return err(`the signature's timestamp is more than ${toleranceSeconds} s away from now`);
  const expected = hmac(secret, `v1.${ts}.${body}`);
  const given = sig.split(",").map((s) => s.trim().replace(/^v1=/, ""));
  return given.some((v) => hexEqual(v, expected)) ? ok(undefined) : err("the signature does not match");
}
