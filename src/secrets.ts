/**
 * The secrets this process holds, and the one function that takes them out of text before the
 * text is logged, stored or audited.
 *
 * Created once, in the composition root, from the configuration; values read later (provider
 * credentials from the environment or the vault, a generated admin token) are added when they are
 * read. Every log line (the logger's last step), every outbox `last_error` and every audit event's
 * text goes through `redact`. Besides the registered values it removes credentials that any URL
 * carries (`scheme://user:password@host`, Telegram's `/bot<token>/`, `?token=…`-style query
 * parameters), whether or not they are known.
 */
export interface Secrets {
  /** Registers a secret read at run time. Values shorter than MIN_SECRET_LENGTH are refused (see warnings). */
  add(name: string, value: string | null | undefined): void;
  /** `text` with every secret replaced by `[redacted:NAME]` (and URL credentials by `[redacted]`). */
  redact(text: string): string;
  /**
   * Only the configured and registered secrets replaced, not credential-looking URL parts: for
   * values that name things (a resource, an action, a branch), which must stay as the agent wrote
   * them to be matched later, while a secret itself never reaches the audit log.
   */
  redactKnown(text: string): string;
  /** Secrets too short to be redacted safely, for a warning at start-up. */
  readonly warnings: readonly string[];
}

/** Shorter values would match ordinary text; they are not redacted, and a warning says so. */
export const MIN_SECRET_LENGTH = 8;

/** `scheme://userinfo@`: the user info, whatever it is, is a credential. */
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@"'<>]+@/gi;
/** The Telegram Bot API puts the bot token in the path: `/bot123456:ABC…/sendMessage`. */
const TELEGRAM_PATH = /\/bot\d+:[A-Za-z0-9_-]+/g;
/** Query parameters that carry credentials by name. */
const QUERY_SECRET =
  /([?&](?:access_token|token|api_key|apikey|key|secret|client_secret|password|passwd|signature|sig|code)=)[^&#\s"'<>\\]+/gi;

/** The forms a value takes when written out: as is, inside JSON, URL-encoded, base64 (Basic auth). */
function forms(value: string): string[] {
  const out = new Set([value, JSON.stringify(value).slice(1, -1), encodeURIComponent(value)]);
  out.add(Buffer.from(value).toString("base64"));
  return [...out];
}

export function createSecrets(
  entries: Iterable<readonly [name: string, value: string | null | undefined]> = [],
): Secrets {
  const labels = new Map<string, string>();
  const warnings: string[] = [];
  // One regular expression for every form of every secret: a single scan per text (measured
  // several times faster than one indexOf per form). Longest first, so that a secret containing
  // another is replaced whole. Matches nothing until a secret is added.
  let known = /(?!)/;
  let knownAll = /(?!)/g;
  const add = (name: string, value: string | null | undefined) => {
    if (value === undefined || value === null || value === "") return;
    if (value.length < MIN_SECRET_LENGTH) {
      const w = `${name} is shorter than ${MIN_SECRET_LENGTH} characters: it is not redacted from logs and error texts; use a longer random value`;
      if (!warnings.includes(w)) warnings.push(w);
      return;
    }
    let changed = false;
    for (const f of forms(value)) {
      if (labels.has(f)) continue;
      labels.set(f, `[redacted:${name}]`);
      changed = true;
    }
    if (changed) {
      const source = [...labels.keys()]
        .sort((a, b) => b.length - a.length)
        .map((f) => f.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&"))
        .join("|");
      known = new RegExp(source);
      knownAll = new RegExp(source, "g");
    }
  };
  for (const [name, value] of entries) add(name, value);
  const label = (match: string) => labels.get(match) ?? "[redacted]";
  return {
    add,
    redactKnown(text: string): string {
      return labels.size > 0 && known.test(text) ? text.replace(knownAll, label) : text;
    },
    redact(text: string): string {
      let out = labels.size > 0 && known.test(text) ? text.replace(knownAll, label) : text;
      if (out.includes("://")) out = out.replace(URL_USERINFO, "$1[redacted]@");
      if (out.includes("/bot")) out = out.replace(TELEGRAM_PATH, "/bot[redacted]");
      if (out.includes("=")) out = out.replace(QUERY_SECRET, "$1[redacted]");
      return out;
    },
    warnings,
  };
}

/** The password of a URL (as written and decoded), if it has one. */
export function urlPasswords(url: string | undefined): string[] {
  if (!url) return [];
  try {
    const p = new URL(url).password;
    return p ? [p, decodeURIComponent(p)] : [];
  } catch {
    return [];
  }
}
