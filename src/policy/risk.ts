import { mustCompileGlob } from "./glob.js";
import type { ProjectSettings, RiskTier } from "./types.js";

/** Services whose writes move money: any of their non-read actions is high risk. */
const MONEY_SERVICES = new Set([
  "stripe",
  "revolut",
  "wise",
  "paypal",
  "adyen",
  "braintree",
  "square",
  "brex",
  "mercury",
  "plaid",
  "bank",
  "payments",
]);

const READ = new Set([
  "read",
  "get",
  "list",
  "describe",
  "head",
  "view",
  "fetch",
  "search",
  "query",
  "retrieve",
  "show",
  "lookup",
  "download",
  "clone",
  "pull",
  "stat",
  "select",
  "browse",
  "export",
]);
const HIGH = new Set([
  // deletion
  "delete",
  "destroy",
  "remove",
  "drop",
  "purge",
  "truncate",
  "terminate",
  "rm",
  "wipe",
  "erase",
  "force",
  // credentials
  "iam",
  "secret",
  "secrets",
  "credential",
  "credentials",
  "key",
  "keys",
  "token",
  "tokens",
  "password",
  "passwd",
  "kms",
  "sts",
  "assumerole",
  "auth",
  // administration
  "admin",
  "root",
  "sudo",
  "owner",
  "policy",
  "policies",
  "permission",
  "permissions",
  "role",
  "roles",
  "grant",
  "acl",
  // money movement
  "refund",
  "refunds",
  "payout",
  "payouts",
  "transfer",
  "transfers",
  "pay",
  "payment",
  "payments",
  "capture",
  "withdraw",
  // arbitrary execution
  "bash",
  "shell",
  "exec",
  "execute",
  "ssh",
  "eval",
]);

/** Splits an action into lower-case words: `aws:iam:CreateAccessKey` → aws, iam, create, access, key. */
function words(action: string): string[] {
  return action
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((w) => w.toLowerCase());
}

const WRITE = new Set([
  "create",
  "update",
  "put",
  "post",
  "set",
  "add",
  "write",
  "modify",
  "patch",
  "send",
  "start",
  "stop",
  "run",
  "invoke",
  "attach",
  "detach",
  "enable",
  "disable",
  "import",
  "export",
  "upload",
  "push",
  "merge",
  "edit",
  "replace",
  "restore",
  "apply",
  "cancel",
  "tag",
  "untag",
  "copy",
  "move",
  "rename",
  "reset",
  "rotate",
  "issue",
  "approve",
  "confirm",
  "submit",
  "index",
  "publish",
  "deploy",
  "scale",
  "reboot",
  "restart",
  "register",
  "subscribe",
  "charge",
  "bill",
  "invoice",
]);

/**
 * The risk tier of an action: the project's `settings.risk` first (first matching pattern wins),
 * else: deletion, credentials, administration, money movement and shell execution are high; any
 * write of a payments service is high; other writes are medium; an action whose words are reads
 * only is low; anything unrecognised is medium. Write words are looked at before read words, so a
 * verb such as `update_search_index` cannot pass for a read.
 */
export function classifyRisk(action: string, settings: Pick<ProjectSettings, "risk">): RiskTier {
  for (const r of settings.risk) if (mustCompileGlob(r.action).match(action)) return r.tier;
  const [service = "", ...rest] = words(action);
  if (rest.some((w) => HIGH.has(w))) return "high";
  const writes = rest.some((w) => WRITE.has(w));
  const reads = rest.some((w) => READ.has(w));
  if (!writes && reads) return "low";
  if (MONEY_SERVICES.has(service)) return "high";
  return "medium";
}
