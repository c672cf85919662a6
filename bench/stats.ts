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

export const ratio = (a: number, b: number): string => (Number.isFinite(a / b) ? (a / b).toFixed(2) : 'n/a');

/** Bench scale: DEVMAPPER_BENCH_SCALE (default 1) multiplies every round's work. */
export const SCALE = Number(process.env.DEVMAPPER_BENCH_SCALE ?? '1') || 1;
export const scaled = (n: number): number => Math.max(1, Math.round(n * SCALE));
