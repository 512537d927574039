/**
 * How the text report writes numbers, the same in every table, line and warning: counts with
 * thousands separators, shares that never read 100% (or 0%) unless they are, durations with one
 * decimal in the unit that fits.
 */

/** 1234567 as "1,234,567". */
export function count(n: number): string {
  return n.toLocaleString('en-US');
}

/**
 * A share as a percentage with `digits` decimals, rounded to nearest but never up to 100% nor
 * down to 0%: 999 of 1,000 is "99.9%", 9,999 of 10,000 "99.9%" too (not "100.0%"), 1 of 10,000
 * "<0.1%" (not "0.0%"). Only all is 100%, only none 0%.
 */
export function percent(share: number, digits = 1): string {
  if (!(share > 0)) return `${(0).toFixed(digits)}%`;
  if (share >= 1) return `${(100).toFixed(digits)}%`;
  const step = 10 ** -digits;
  const text = (share * 100).toFixed(digits);
  if (Number(text) >= 100) return `${(100 - step).toFixed(digits)}%`;
  if (Number(text) <= 0) return `<${step.toFixed(digits)}%`;
  return `${text}%`;
}

/**
 * A duration in seconds with one decimal in the unit that fits: "45.0 µs", "1.5 ms", "912.0 ms",
 * "2.0 s", "75.0 s", "5.2 min", "3.1 h". Zero is "0 s".
 */
export function duration(seconds: number): string {
  const x = Math.abs(seconds);
  const sign = seconds < 0 ? '-' : '';
  if (x === 0) return '0 s';
  if (x < 0.99995e-3) return `${sign}${(x * 1e6).toFixed(1)} µs`;
  // The unit changes where one decimal would print 1000.0: 0.99996 s is "1.0 s", not "1000.0 ms".
  if (x < 0.99995) return `${sign}${(x * 1e3).toFixed(1)} ms`;
  if (x < 120) return `${sign}${x.toFixed(1)} s`;
  if (x < 7200) return `${sign}${(x / 60).toFixed(1)} min`;
  return `${sign}${(x / 3600).toFixed(1)} h`;
}
