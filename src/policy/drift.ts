/**
 * Drift (pure): how an agent's use of tools in a recent window departs from its use in the baseline
 * window before it. Two distances, each in [0, 1]:
 *
 * - the Jaccard distance of the two sets of tools used (1 − |A ∩ B| / |A ∪ B|): tools taken up or
 *   dropped;
 * - the Jensen–Shannon divergence of the two mixes (base 2): the same tools used in other
 *   proportions (90% list / 10% create becoming 20% / 80% is 0.40).
 *
 * The level is the higher of the two distances' levels: `major` from 0.5 (Jaccard) or 0.3
 * (Jensen–Shannon), `minor` from 0.2 or 0.1, else `none`. Too few calls in either window
 * (`minCalls`) says nothing: `none`.
 *
 * Merchant categories of an agent's card payments (`newIsMajor`) are rarer and each one counts: a
 * category the baseline never had is `major` as soon as it is seen, once the baseline holds
 * `minCalls` payments (the seed's "new MCC → major drift").
 */

export type DriftLevel = "none" | "minor" | "major";

export interface DriftThresholds {
  jaccardMinor: number;
  jaccardMajor: number;
  jsMinor: number;
  jsMajor: number;
  minCalls: number;
}

export const DEFAULT_DRIFT_THRESHOLDS: DriftThresholds = {
  jaccardMinor: 0.2,
  jaccardMajor: 0.5,
  jsMinor: 0.1,
  jsMajor: 0.3,
  minCalls: 20,
};

export interface Drift {
  level: DriftLevel;
  jaccard: number;
  jensenShannon: number;
  baselineCalls: number;
  recentCalls: number;
  /** The tools whose share moved the most, with their shares before and now. */
  shifts: { value: string; baseline: number; recent: number }[];
  /** Values used in the recent window and never in the baseline (at most 10). */
  newValues: string[];
}

/** Counts per tool (or group, or merchant category). */
export type Counts = ReadonlyMap<string, number>;

const total = (c: Counts) => [...c.values()].reduce((a, b) => a + b, 0);
const round = (x: number) => Math.round(x * 1000) / 1000;

export function jaccardDistance(a: Counts, b: Counts): number {
  const used = (c: Counts) => new Set([...c].filter(([, n]) => n > 0).map(([k]) => k));
  const sa = used(a);
  const sb = used(b);
  const union = new Set([...sa, ...sb]);
  if (union.size === 0) return 0;
  let both = 0;
  for (const k of sa) if (sb.has(k)) both++;
  return 1 - both / union.size;
}

export function jensenShannon(a: Counts, b: Counts): number {
  const ta = total(a);
  const tb = total(b);
  if (ta === 0 || tb === 0) return 0;
  let js = 0;
  for (const k of new Set([...a.keys(), ...b.keys()])) {
    const p = (a.get(k) ?? 0) / ta;
    const q = (b.get(k) ?? 0) / tb;
    const m = (p + q) / 2;
    if (p > 0) js += 0.5 * p * Math.log2(p / m);
    if (q > 0) js += 0.5 * q * Math.log2(q / m);
  }
  return Math.min(1, Math.max(0, js));
}

export function drift(
  baseline: Counts,
  recent: Counts,
  t: DriftThresholds = DEFAULT_DRIFT_THRESHOLDS,
  newIsMajor = false,
): Drift {
  const baselineCalls = total(baseline);
  const recentCalls = total(recent);
  const jaccard = jaccardDistance(baseline, recent);
  const js = jensenShannon(baseline, recent);
  const enough = baselineCalls >= t.minCalls && recentCalls >= t.minCalls;
  const newValues = [...recent].filter(([k, n]) => n > 0 && (baseline.get(k) ?? 0) === 0).map(([k]) => k);
  const level: DriftLevel =
    newIsMajor && baselineCalls >= t.minCalls && newValues.length > 0
      ? "major"
      : !enough
        ? "none"
        : jaccard >= t.jaccardMajor || js >= t.jsMajor
          ? "major"
          : jaccard >= t.jaccardMinor || js >= t.jsMinor
            ? "minor"
            : "none";
  const shifts = [...new Set([...baseline.keys(), ...recent.keys()])]
    .map((value) => ({
      value,
      baseline: baselineCalls ? round((baseline.get(value) ?? 0) / baselineCalls) : 0,
      recent: recentCalls ? round((recent.get(value) ?? 0) / recentCalls) : 0,
    }))
    .sort((x, y) => Math.abs(y.recent - y.baseline) - Math.abs(x.recent - x.baseline))
    .slice(0, 5);
  return {
    level,
    jaccard: round(jaccard),
    jensenShannon: round(js),
    baselineCalls,
    recentCalls,
    shifts,
    newValues: newValues.slice(0, 10),
  };
}

/** How far under a threshold the distances must fall before a level falls with them. */
export const DRIFT_HYSTERESIS = 0.05;

/** Levels in order, for "at least this level" comparisons. */
export const DRIFT_RANK: Readonly<Record<DriftLevel, number>> = { none: 0, minor: 1, major: 2 };

/**
 * The level to record, given the one recorded before: a level rises as soon as the distances
 * cross its threshold, and falls only once both are more than `DRIFT_HYSTERESIS` under it, so that
 * distances hovering at a threshold do not flip the level (and write a line) at every evaluation.
 * Far too few calls (under three quarters of `minCalls`) lets it fall to what was computed.
 */
export function settleLevel(
  previous: DriftLevel,
  d: Drift,
  t: DriftThresholds = DEFAULT_DRIFT_THRESHOLDS,
): DriftLevel {
  if (DRIFT_RANK[d.level] >= DRIFT_RANK[previous]) return d.level;
  // Just short of the calls needed to say anything: held too (a quiet agent hovering at the
  // line would flip otherwise); well short, it falls to what was computed.
  const enough = Math.ceil(t.minCalls * 0.75);
  if (d.baselineCalls < enough || d.recentCalls < enough) return d.level;
  // Otherwise the distances decide, with the margin.
  const m = DRIFT_HYSTERESIS;
  if (previous === "major" && (d.jaccard >= t.jaccardMajor - m || d.jensenShannon >= t.jsMajor - m))
    return "major";
  if (d.jaccard >= t.jaccardMinor - m || d.jensenShannon >= t.jsMinor - m) return "minor";
  return d.level;
}
