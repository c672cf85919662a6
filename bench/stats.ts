// Figures from rounds: the first round is a warm-up and dropped; what is reported is the median of
// the rest (or a percentile of pooled samples).
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Nearest-rank percentile (p in 0..100). */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}

/** The rounds after the warm-up one. */
export function afterWarmup<T>(rounds: readonly T[]): T[] {
  return rounds.slice(1);
}

export const nowNs = (): bigint => process.hrtime.bigint();
export const msSince = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

export function fmt(x: number, digits = 3): string {
  if (!Number.isFinite(x)) return 'n/a';
  if (x >= 1000) return Math.round(x).toLocaleString('en-US');
  return x.toPrecision(digits);
}

/** The spread of a figure over rounds (or over boots): median, and the range it moved in. */
export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function spread(xs: readonly number[]): Spread {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length };
}

/** Per-round ratios a[i] / b[i] of two programs interleaved in the same rounds. */
export function perRound(a: readonly number[], b: readonly number[]): number[] {
  if (a.length !== b.length) throw new Error(`perRound: ${a.length} rounds against ${b.length}`);
  return a.map((x, i) => x / (b[i] as number));
}

/** "0.91 (0.85–0.97)": median and range. */
export function fmtSpread(s: Spread, digits = 2): string {
  return `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`;
}

/** A target on a ratio: at least (`>=`) or at most (`<=`) `value`. */
export interface Target {
  op: '>=' | '<=';
  value: number;
}

export const meets = (x: number, t: Target): boolean => (t.op === '>=' ? x >= t.value : x <= t.value);

/**
 * Met or missed by the median; "within noise" when the range crosses the target, so that another
 * run could have said the opposite.
 */
export function verdict(s: Spread, t: Target): 'met' | 'met within noise' | 'missed within noise' | 'MISSED' {
  const worst = t.op === '>=' ? s.min : s.max;
  const best = t.op === '>=' ? s.max : s.min;
  if (meets(s.median, t)) return meets(worst, t) ? 'met' : 'met within noise';
  return meets(best, t) ? 'missed within noise' : 'MISSED';
}

export const fmtTarget = (t: Target): string => `${t.op === '>=' ? '≥' : '≤'} ${t.value}`;

export const ratio = (a: number, b: number): string => (Number.isFinite(a / b) ? (a / b).toFixed(2) : 'n/a');

/** Bench scale: DEVMAPPER_BENCH_SCALE (default 1) multiplies every round's work. */
export const SCALE = Number(process.env.DEVMAPPER_BENCH_SCALE ?? '1') || 1;
export const scaled = (n: number): number => Math.max(1, Math.round(n * SCALE));
