/** Small statistics the consumers of the facts share: medians and ratios as reports show them. */

/** The median of `xs` (the mean of the two middle values for an even count), rounded to `digits` places if given; null when empty. */
export function median(xs: readonly number[], digits?: number): number | null {
  const n = xs.length;
  if (n === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  if (digits === undefined) return m;
  const f = 10 ** digits;
  return Math.round(m * f) / f;
}

/** A ratio to 4 places, rounded down: 9,999 of 10,000 is 0.9999 and 99,999 of 100,000 too, never 1 (only all is 1). */
export function ratioDown(x: number): number {
  return Math.floor(x * 1e4 + 1e-9) / 1e4;
}
