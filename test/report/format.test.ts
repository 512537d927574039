/**
 * The text report's number formats (issue 14, "the text report"): shares never read 100% unless
 * all, nor 0% unless none; one duration format (one decimal in the unit that fits); counts with
 * thousands separators.
 */
import { describe, expect, it } from 'vitest';
import { count, duration, percent } from '../../src/report/format.js';

describe('percent', () => {
  it('never rounds up to 100% or down to 0%', () => {
    expect(percent(999 / 1000)).toBe('99.9%');
    expect(percent(9999 / 10000)).toBe('99.9%');
    expect(percent(99999 / 100000)).toBe('99.9%');
    expect(percent(1)).toBe('100.0%');
    expect(percent(0)).toBe('0.0%');
    expect(percent(1 / 10000)).toBe('<0.1%');
    expect(percent(1 / 1000)).toBe('0.1%');
    expect(percent(0.5)).toBe('50.0%');
    expect(percent(0.12345)).toBe('12.3%');
  });
  it('with whole percents (warnings)', () => {
    expect(percent(0.996, 0)).toBe('99%');
    expect(percent(0.004, 0)).toBe('<1%');
    expect(percent(0.25, 0)).toBe('25%');
    expect(percent(1, 0)).toBe('100%');
  });
});

describe('duration', () => {
  it('one decimal in the unit that fits', () => {
    expect(duration(0)).toBe('0 s');
    expect(duration(0.000045)).toBe('45.0 µs');
    expect(duration(0.0015)).toBe('1.5 ms');
    expect(duration(0.912)).toBe('912.0 ms');
    expect(duration(2.003)).toBe('2.0 s');
    expect(duration(75)).toBe('75.0 s');
    expect(duration(312)).toBe('5.2 min');
    expect(duration(11160)).toBe('3.1 h');
    expect(duration(-1.25)).toBe('-1.3 s');
  });
  it('changes unit instead of printing 1000.0 of the smaller one', () => {
    expect(duration(0.99999)).toBe('1.0 s');
    expect(duration(0.00099999)).toBe('1.0 ms');
  });
});

describe('count', () => {
  it('has thousands separators', () => {
    expect(count(1234567)).toBe('1,234,567');
    expect(count(999)).toBe('999');
  });
});
