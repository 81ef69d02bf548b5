/**
 * `Date.prototype.toISOString` is slow in V8 (most of a microsecond on small machines), and every
 * audit event needs one. The part up to the second changes once a second, so it is cached.
 */
let cachedSecond = Number.NaN;
let cachedPrefix = "";

/** The same string as `date.toISOString()` (UTC, milliseconds, `Z`). */
export function isoTimestamp(date: Date): string {
  const ms = date.getTime();
  const second = Math.floor(ms / 1000);
  if (second !== cachedSecond) {
    const iso = new Date(second * 1000).toISOString();
    // Years outside 0000-9999 have a different shape; they are not cached.
    if (iso.length !== 24) return date.toISOString();
    cachedSecond = second;
    cachedPrefix = iso.slice(0, 20);
  }
  const frac = ms - second * 1000;
  return `${cachedPrefix}${frac < 10 ? "00" : frac < 100 ? "0" : ""}${frac}Z`;
}
