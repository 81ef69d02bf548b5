import { BlockList, isIP } from "node:net";
import { err, ok, type Result } from "../result.js";

/**
 * Addresses a push notification must never reach unless an operator allows the host by name:
 * loopback, private networks, link-local (cloud metadata at 169.254.169.254 lives here), carrier
 * NAT, benchmarking, multicast, reserved and unspecified ranges, in IPv4 and IPv6.
 */
const internal = new BlockList();
for (const [net, bits] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.0.2.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["198.51.100.0", 24],
  ["203.0.113.0", 24],
  ["224.0.0.0", 3],
] as const) {
  internal.addSubnet(net, bits, "ipv4");
}
for (const [net, bits] of [
  // IPv4-compatible (deprecated; includes :: and ::1), SIIT, local-use NAT64, 6to4.
  ["::", 96],
  ["::ffff:0:0:0", 96],
  ["64:ff9b:1::", 48],
  ["2002::", 16],
  ["fc00::", 7],
  ["fe80::", 10],
  ["fec0::", 10],
  ["ff00::", 8],
  ["2001:db8::", 32],
  ["100::", 64],
] as const) {
  internal.addSubnet(net, bits, "ipv6");
}

/** The IPv4 address carried inside an IPv4-mapped, IPv4-compatible or NAT64 IPv6 address. */
function embeddedV4(ip: string): string | undefined {
  const m = /^(?:::ffff:|::|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (m) return m[1];
  const hex = /^(?:::ffff:|64:ff9b::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(ip);
  if (!hex) return undefined;
  const hi = Number.parseInt(hex[1]!, 16);
  const lo = Number.parseInt(hex[2]!, 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/** True for addresses inside the operator's own networks or the machine itself. */
export function isInternalAddress(ip: string): boolean {
  const bare = ip.replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  const family = isIP(bare);
  if (family === 4) return internal.check(bare, "ipv4");
  if (family === 6) {
    if (internal.check(bare, "ipv6")) return true;
    const v4 = embeddedV4(bare);
    return v4 !== undefined && internal.check(v4, "ipv4");
  }
  return true;
}

/** Host names allowed as push targets in spite of the rules above: `host` or `host:port`. */
export type PushAllowlist = readonly string[];

function allowed(url: URL, allow: PushAllowlist): boolean {
  const host = url.hostname.toLowerCase();
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  return allow.some((entry) => {
    const e = entry.trim().toLowerCase();
    return e === host || e === `${host}:${port}`;
  });
}

/**
 * Checks a push notification URL against server-side request forgery: `https` only, no user info,
 * and never an internal address, unless the host is on the allowlist (which also permits `http`).
 * Host names are checked again, resolved, when a push is sent (see {@link lookupGuard}).
 */
export function checkPushUrl(raw: string, allow: PushAllowlist): Result<URL, string> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return err(`push notification url ${JSON.stringify(raw.slice(0, 200))} is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:")
    return err(`push notification url must be https://, not ${url.protocol}`);
  if (url.username || url.password)
    return err("push notification url must not carry a user name or password");
  if (allowed(url, allow)) return ok(url);
  if (url.protocol !== "https:")
    return err(
      `push notification url must be https:// (http:// only for hosts listed in BUTLER_A2A_PUSH_ALLOWLIST), not ${url.origin}`,
    );
  // "localhost." is localhost: trailing dots (fully qualified names) do not make a host remote.
  const host = url.hostname
    .replace(/^\[|\]$/g, "")
    .replace(/\.+$/, "")
    .toLowerCase();
  if (isIP(host) !== 0) {
    if (isInternalAddress(host))
      return err(
        `push notification url ${url.origin} points at an internal address; list the host in BUTLER_A2A_PUSH_ALLOWLIST to allow it`,
      );
    return ok(url);
  }
  if (host === "localhost" || host.endsWith(".localhost") || !host.includes("."))
    return err(
      `push notification url ${url.origin} names a local host; list the host in BUTLER_A2A_PUSH_ALLOWLIST to allow it`,
    );
  return ok(url);
}

/** Whether a URL's host is on the allowlist (then resolved addresses are not checked). */
export function isAllowlisted(url: URL, allow: PushAllowlist): boolean {
  return allowed(url, allow);
}
