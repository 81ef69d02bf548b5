import { err, ok, type Result } from "../result.js";

/**
 * Durations are written as ISO 8601 durations (`PT24H`, `P7D`, `PT90M`, `P1DT12H`, `P2W`) or as a
 * whole number of seconds (`86400`). Years and months are refused because their length varies.
 */
const ISO_DURATION = /^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/;

export const DURATION_MAX_SECONDS = 10 * 365 * 24 * 3600;

export function parseDuration(input: unknown): Result<number> {
  if (typeof input === "number") {
    if (!Number.isSafeInteger(input) || input <= 0) return err("must be a positive whole number of seconds");
    if (input > DURATION_MAX_SECONDS) return err("is longer than 10 years");
    return ok(input);
  }
  if (typeof input !== "string")
    return err("must be an ISO 8601 duration such as PT24H, or a number of seconds");
  const s = input.trim().toUpperCase();
  if (/^\d+$/.test(s)) return parseDuration(Number(s));
  const m = ISO_DURATION.exec(s);
  if (!m || s === "P" || s.endsWith("T")) {
    return err(
      `'${truncate(input)}' is not an ISO 8601 duration; write for example PT24H, P7D or PT30M, or a number of seconds`,
    );
  }
  const [, y, mo, w, d, h, min, sec] = m;
  if (y !== undefined || mo !== undefined) {
    return err(
      `'${truncate(input)}' uses years or months, whose length varies; write days instead (for example P30D)`,
    );
  }
  const seconds =
    Number(w ?? 0) * 604800 +
    Number(d ?? 0) * 86400 +
    Number(h ?? 0) * 3600 +
    Number(min ?? 0) * 60 +
    Number(sec ?? 0);
  if (seconds === 0) return err("must be longer than zero");
  return parseDuration(seconds);
}

/**
 * Formats seconds as an ISO 8601 duration the way people say it: hours below two days
 * (86400 → `PT24H`, 5400 → `PT1H30M`), days from two days on (604800 → `P7D`).
 */
export function formatDuration(seconds: number): string {
  let rest = Math.floor(seconds);
  const d = rest >= 2 * 86400 ? Math.floor(rest / 86400) : 0;
  rest -= d * 86400;
  const h = Math.floor(rest / 3600);
  rest -= h * 3600;
  const m = Math.floor(rest / 60);
  const s = rest - m * 60;
  let out = "P";
  if (d) out += `${d}D`;
  if (h || m || s || !d) {
    out += "T";
    if (h) out += `${h}H`;
    if (m) out += `${m}M`;
    if (s || (!h && !m)) out += `${s}S`;
  }
  return out;
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * Parses an RFC 3339 timestamp with an explicit zone (`2026-12-31T23:59:59Z`,
 * `2026-12-31T12:00:00+02:00`) into epoch milliseconds. Dates without a zone are refused: which
 * midnight they mean depends on where the gateway runs.
 */
export function parseTimestamp(input: unknown): Result<number> {
  if (input instanceof Date)
    return Number.isNaN(input.getTime()) ? err("is not a valid date") : ok(input.getTime());
  if (typeof input !== "string") return err("must be a timestamp such as 2026-12-31T23:59:59Z");
  const m = RFC3339.exec(input.trim());
  if (!m) {
    return err(
      `'${truncate(input)}' is not a timestamp with a time zone; write for example 2026-12-31T23:59:59Z`,
    );
  }
  const [, y, mo, d, h, mi, s] = m.map(Number) as unknown as number[];
  const ms = Date.parse(input.trim());
  if (
    Number.isNaN(ms) ||
    y! < 1 ||
    mo! < 1 ||
    mo! > 12 ||
    d! < 1 ||
    d! > daysInMonth(y!, mo!) ||
    h! > 23 ||
    mi! > 59 ||
    s! > 59
  ) {
    return err(`'${truncate(input)}' is not a real date and time`);
  }
  return ok(ms);
}

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

function truncate(s: string, max = 60): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}
