/**
 * Personal data and secrets in a call's parameters (pure). Each detector finds one kind of value in
 * text; a project's `data_protection` says per kind whether a finding is only flagged in the
 * decision's audit line, also redacted from everything Butler shows people (requests, cards,
 * proposals, reasons), or denied. Findings name the kind and where it is (`params.to`), never the value.
 */

export const SENSITIVE_KINDS = ["email", "iban", "card_number", "api_key", "private_key"] as const;
export type SensitiveKind = (typeof SENSITIVE_KINDS)[number];
export type ProtectionMode = "flag" | "redact" | "deny";

/** A project's `data_protection`: what to do with each kind found (kinds not named are not looked for). */
export type DataProtection = Partial<Record<SensitiveKind, ProtectionMode>>;

export interface Finding {
  kind: SensitiveKind;
  /** Where: `params.to`, `params.items.0.note`, or `params.<key>` for a finding in a parameter's name. */
  path: string;
}

interface Match {
  start: number;
  end: number;
}

const EMAIL = /[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}/g;
/**
 * Two letters, two check digits, 11 to 30 letters or digits, a space or dash allowed between any
 * two; the candidate may run on into the next word (`… 013000 EUR`): shorter prefixes are tried.
 */
const IBAN = /\b[A-Za-z]{2}\d{2}(?:[ -]?[A-Za-z0-9]){11,34}/g;
/** 13 to 19 digits, optionally grouped by single spaces or dashes (shorter prefixes are tried, as for IBANs). */
const CARD = /(?<![0-9])\d(?:[ -]?\d){12,18}/g;
const PRIVATE_KEY = /-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----/g;
/** Credential shapes of well-known services (each with its fixed prefix, so ordinary words never match). */
const API_KEY = new RegExp(
  [
    String.raw`\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}`, // Stripe
    String.raw`\bwhsec_[A-Za-z0-9]{24,}`, // Stripe webhook secret
    String.raw`\b(?:AKIA|ASIA)[0-9A-Z]{16}\b`, // AWS access key id
    String.raw`\bgh[pousr]_[A-Za-z0-9]{36,}`, // GitHub tokens
    String.raw`\bgithub_pat_[A-Za-z0-9_]{40,}`, // GitHub fine-grained token
    String.raw`\bglpat-[A-Za-z0-9_-]{20,}`, // GitLab
    String.raw`\bxox[abprs]-[A-Za-z0-9-]{10,}`, // Slack
    String.raw`\bAIza[0-9A-Za-z_-]{35}`, // Google API key
    String.raw`\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{32,}`, // OpenAI, Anthropic
    // JWT. Starting only where a run starts (not at every "ey" inside one): linear time.
    String.raw`(?<![A-Za-z0-9_-])ey[A-Za-z0-9_-]{10,8192}\.ey[A-Za-z0-9_-]{10,8192}\.[A-Za-z0-9_-]{10,}`,
    String.raw`\b(?:bt|bta|bat)_[A-Za-z0-9]{32,}`, // Butler's own tokens
  ].join("|"),
  "g",
);

/** The Luhn check of a card number's digits. */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/** The ISO 13616 check of an IBAN (mod 97 of the rearranged number is 1). */
export function ibanValid(iban: string): boolean {
  const s = iban.replace(/ /g, "");
  if (s.length < 15 || s.length > 34) return false;
  const moved = s.slice(4) + s.slice(0, 4);
  let rest = 0;
  for (const ch of moved) {
    const code = ch.charCodeAt(0);
    const value = code >= 65 ? String(code - 55) : ch;
    for (const digit of value) rest = (rest * 10 + (digit.charCodeAt(0) - 48)) % 97;
  }
  return rest === 1;
}

/** Whether the first `k` characters of `c` (digits, spaces, dashes) are a card number: 13 to 19 digits, Luhn. */
function cardPrefixValid(c: string, k: number): boolean {
  let sum = 0;
  let n = 0;
  for (let i = k - 1; i >= 0; i--) {
    const code = c.charCodeAt(i);
    if (code < 48 || code > 57) continue;
    let d = code - 48;
    if (n % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    n++;
  }
  return n >= 13 && n <= 19 && sum % 10 === 0;
}

/** Whether the first `k` characters of `c` (letters, digits, spaces, dashes) are an IBAN (length, mod 97). */
function ibanPrefixValid(c: string, k: number): boolean {
  let rest = 0;
  let n = 0;
  const add = (code: number) => {
    if (code >= 97) code -= 32;
    if (code >= 65) {
      const v = code - 55;
      rest = (rest * 100 + v) % 97;
    } else rest = (rest * 10 + (code - 48)) % 97;
  };
  // The first four characters go last.
  let head = 0;
  for (let i = 0; i < k; i++) {
    const code = c.charCodeAt(i);
    if (code === 32 || code === 45) continue;
    n++;
    if (head < 4) {
      head++;
      continue;
    }
    add(code);
  }
  if (n < 15 || n > 34) return false;
  for (let i = 0, taken = 0; i < k && taken < 4; i++) {
    const code = c.charCodeAt(i);
    if (code === 32 || code === 45) continue;
    add(code);
    taken++;
  }
  return rest === 1;
}

function matches(re: RegExp, text: string): Match[] {
  const out: Match[] = [];
  re.lastIndex = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) out.push({ start: m.index, end: m.index + m[0].length });
  return out;
}

/**
 * Candidates that must pass a check: the longest prefix of each candidate that passes (ending on a
 * letter or digit, not inside a word), so that `DE89… EUR` or `4111 … 1111 123` still count; the scan
 * goes on after it, or after the candidate when no prefix passes.
 */
function checked(
  re: RegExp,
  text: string,
  minLength: number,
  valid: (c: string, k: number) => boolean,
): Match[] {
  const out: Match[] = [];
  re.lastIndex = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const c = m[0];
    let found = false;
    // Prefixes ending where a group ends (before a space or dash, or at the candidate's end).
    for (let k = c.length; k >= minLength && !found; k--) {
      if (k < c.length && c[k] !== " " && c[k] !== "-") continue;
      if (/[A-Za-z0-9]/.test(text[m.index + k] ?? "") && k === c.length) continue;
      if (valid(c, k)) {
        out.push({ start: m.index, end: m.index + k });
        found = true;
      }
    }
    // None: the value may start at a later group (`order 12 4111…`).
    if (!found) re.lastIndex = m.index + 1;
  }
  return out;
}

const DETECT: Record<SensitiveKind, (text: string) => Match[]> = {
  email: (t) => (t.includes("@") ? matches(EMAIL, t) : []),
  iban: (t) => checked(IBAN, t, 15, ibanPrefixValid),
  card_number: (t) => checked(CARD, t, 13, cardPrefixValid),
  api_key: (t) => matches(API_KEY, t),
  private_key: (t) => (t.includes("PRIVATE KEY") ? matches(PRIVATE_KEY, t) : []),
};

/** The kinds found in one text (each at most once), among `kinds`. */
export function detect(text: string, kinds: readonly SensitiveKind[] = SENSITIVE_KINDS): SensitiveKind[] {
  return kinds.filter((k) => DETECT[k](text).length > 0);
}

const MAX_DEPTH = 32;
const MAX_STRINGS = 10_000;

/**
 * Every finding of the `kinds` in `params` (values and parameter names, however nested); or
 * `undefined` when the parameters are too large or too deep to check (the caller fails closed).
 */
export function scanParams(params: unknown, kinds: readonly SensitiveKind[]): Finding[] | undefined {
  const found: Finding[] = [];
  let strings = 0;
  const walk = (v: unknown, path: string, depth: number): boolean => {
    // Numbers are text too: a card number sent as a JSON number.
    if (typeof v === "string" || typeof v === "number") {
      if (++strings > MAX_STRINGS) return false;
      for (const kind of detect(typeof v === "number" ? String(v) : v, kinds)) found.push({ kind, path });
      return true;
    }
    if (v === null || typeof v !== "object") return true;
    if (depth >= MAX_DEPTH) return false;
    if (Array.isArray(v)) return v.every((x, i) => walk(x, `${path}.${i}`, depth + 1));
    for (const [k, x] of Object.entries(v)) {
      if (++strings > MAX_STRINGS) return false;
      const inKey = detect(k, kinds);
      for (const kind of inKey) found.push({ kind, path: `${path}.<key>` });
      // A place names a parameter only by a plain, short name: never by agent text that could hold a value.
      const segment = inKey.length === 0 && PLAIN_KEY.test(k) ? k : "<key>";
      if (!walk(x, `${path}.${segment}`, depth + 1)) return false;
    }
    return true;
  };
  return walk(params, "params", 0) ? found : undefined;
}

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_-]{0,63}$/;

/** Text with every value of the `kinds` replaced by `[redacted:<kind>]` (a reason quoting a parameter). */
export function redactText(s: string, kinds: readonly SensitiveKind[]): string {
  let out = s;
  for (const kind of kinds) {
    const ms = DETECT[kind](out);
    for (let i = ms.length - 1; i >= 0; i--)
      out = `${out.slice(0, ms[i]!.start)}[redacted:${kind}]${out.slice(ms[i]!.end)}`;
  }
  return out;
}

/** `params` with every value of the `kinds` replaced by `[redacted:<kind>]` (parameter names too). */
export function redactParams<T>(params: T, kinds: readonly SensitiveKind[]): T {
  if (kinds.length === 0) return params;
  const text = (s: string) => redactText(s, kinds);
  const walk = (v: unknown, depth: number): unknown => {
    if (typeof v === "string") return text(v);
    if (typeof v === "number") {
      const t = text(String(v));
      return t === String(v) ? v : t;
    }
    if (v === null || typeof v !== "object") return v;
    if (depth >= MAX_DEPTH) return "[redacted:too deep to check]";
    if (Array.isArray(v)) return v.map((x) => walk(x, depth + 1));
    // Two names redacted alike must not become one (the last would hide the first): each is numbered.
    const out: Record<string, unknown> = {};
    let n = 0;
    for (const [k, x] of Object.entries(v)) {
      let key = text(k);
      // Redacted (or written to look redacted) names are numbered: two never become one.
      if (key !== k || key.includes("[redacted:") || key in out) key = `${key}#${++n}`;
      Object.defineProperty(out, key, {
        value: walk(x, depth + 1),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  };
  return walk(params, 0) as T;
}

const kindsCache = new WeakMap<
  DataProtection,
  { all: SensitiveKind[]; redact: SensitiveKind[]; deny: SensitiveKind[] }
>();

/** The kinds a project's data protection names, redacts and denies (made once per policy revision). */
export function protectionKinds(dp: DataProtection) {
  let k = kindsCache.get(dp);
  if (!k) {
    k = {
      all: SENSITIVE_KINDS.filter((x) => dp[x] !== undefined),
      redact: kindsIn(dp, "redact"),
      deny: kindsIn(dp, "deny"),
    };
    kindsCache.set(dp, k);
  }
  return k;
}

/** The kinds a project's data protection handles in `mode`. */
export function kindsIn(dp: DataProtection, mode: ProtectionMode): SensitiveKind[] {
  return SENSITIVE_KINDS.filter((k) => dp[k] === mode);
}
