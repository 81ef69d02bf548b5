/**
 * Personal data and secrets in a call's parameters (pure). Each detector finds one kind of value in
 * text; a project's `data_protection` says per kind whether a finding is only flagged in the
 * decision's audit line, also redacted from everything Butler stores and shows (requests, cards,
 * proposals), or denied. Findings name the kind and where it is (`params.to`), never the value.
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
/** Two letters, two check digits, 11 to 30 letters or digits, spaces allowed every so often. */
const IBAN = /\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b/g;
/** 13 to 19 digits, optionally grouped by single spaces or dashes. */
const CARD = /\b\d(?:[ -]?\d){12,18}\b/g;
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
    String.raw`\bey[A-Za-z0-9_-]{10,}\.ey[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}`, // JWT
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

function matches(re: RegExp, text: string, valid?: (m: string) => boolean): Match[] {
  const out: Match[] = [];
  re.lastIndex = 0;
  for (let m = re.exec(text); m; m = re.exec(text))
    if (!valid || valid(m[0])) out.push({ start: m.index, end: m.index + m[0].length });
  return out;
}

const DETECT: Record<SensitiveKind, (text: string) => Match[]> = {
  email: (t) => (t.includes("@") ? matches(EMAIL, t) : []),
  iban: (t) => matches(IBAN, t, ibanValid),
  card_number: (t) => matches(CARD, t, (m) => luhnValid(m.replace(/[ -]/g, ""))),
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
    if (typeof v === "string") {
      if (++strings > MAX_STRINGS) return false;
      for (const kind of detect(v, kinds)) found.push({ kind, path });
      return true;
    }
    if (v === null || typeof v !== "object") return true;
    if (depth >= MAX_DEPTH) return false;
    if (Array.isArray(v)) return v.every((x, i) => walk(x, `${path}.${i}`, depth + 1));
    for (const [k, x] of Object.entries(v)) {
      if (++strings > MAX_STRINGS) return false;
      for (const kind of detect(k, kinds)) found.push({ kind, path: `${path}.<key>` });
      if (!walk(x, `${path}.${k}`, depth + 1)) return false;
    }
    return true;
  };
  return walk(params, "params", 0) ? found : undefined;
}

/** `params` with every value of the `kinds` replaced by `[redacted:<kind>]` (parameter names too). */
export function redactParams<T>(params: T, kinds: readonly SensitiveKind[]): T {
  if (kinds.length === 0) return params;
  const text = (s: string): string => {
    let out = s;
    for (const kind of kinds) {
      const ms = DETECT[kind](out);
      for (let i = ms.length - 1; i >= 0; i--)
        out = `${out.slice(0, ms[i]!.start)}[redacted:${kind}]${out.slice(ms[i]!.end)}`;
    }
    return out;
  };
  const walk = (v: unknown, depth: number): unknown => {
    if (typeof v === "string") return text(v);
    if (v === null || typeof v !== "object") return v;
    if (depth >= MAX_DEPTH) return "[redacted:too deep to check]";
    if (Array.isArray(v)) return v.map((x) => walk(x, depth + 1));
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [text(k), walk(x, depth + 1)]));
  };
  return walk(params, 0) as T;
}

/** The kinds a project's data protection handles in `mode`. */
export function kindsIn(dp: DataProtection, mode: ProtectionMode): SensitiveKind[] {
  return SENSITIVE_KINDS.filter((k) => dp[k] === mode);
}
