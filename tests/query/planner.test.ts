import { planSeries } from '../../lib/aggregation/planner';
import { parseMetricAggregateQuery } from '../../lib/klaviyo/metricAggregates';

/** Which path a request takes: the fast paths must be chosen where they are exact, and only there. */
function plan(attributes: Record<string, unknown>) {
  const body = { data: { type: 'metric-aggregate', attributes: { metric_id: 'M1', interval: 'day', ...attributes } } };
  return planSeries(parseMetricAggregateQuery(body, { maxRangeDays: 366 }));
}

const range = (from: string, to: string) => [`greater-or-equal(datetime,${from})`, `less-than(datetime,${to})`];

describe('planSeries', () => {
  it('serves unique per day from lookback counts in whole-hour zones, DST days of 23 and 25 hours included', () => {
    expect(
      plan({ measurements: ['unique'], filter: range('2022-10-01T00:00:00', '2022-11-30T00:00:00') }),
    ).toMatchObject({
      source: 'lookback',
      rawBuckets: [],
    });
    const newYork = plan({
      measurements: ['unique', 'count'],
      timezone: 'America/New_York',
      filter: range('2022-03-10T00:00:00', '2022-11-10T00:00:00'),
    });
    expect(newYork).toMatchObject({ source: 'lookback', rawBuckets: [] });
    const hours = newYork.boundaries.slice(1).map((b, i) => (b - (newYork.boundaries[i] as number)) / 3_600_000);
    expect(new Set(hours)).toEqual(new Set([23, 24, 25]));
  });

  it('counts a bucket cut by the range from raw events, and the others from lookbacks', () => {
    const cut = plan({ measurements: ['unique'], filter: range('2022-10-01T10:30:00', '2022-10-05T07:15:00') });
    expect(cut.source).toBe('lookback');
    expect(cut.rawBuckets).toEqual([0, cut.boundaries.length - 2]);
  });

  it('reads raw events where no lookback serves a bucket: half-hour zones, weeks, months', () => {
    expect(
      plan({
        measurements: ['unique'],
        timezone: 'Asia/Kolkata',
        filter: range('2022-10-01T00:00:00', '2022-11-01T00:00:00'),
      }).source,
    ).toBe('events');
    expect(
      plan({ measurements: ['unique'], interval: 'week', filter: range('2022-10-03T00:00:00', '2022-11-28T00:00:00') })
        .source,
    ).toBe('events');
    expect(
      plan({ measurements: ['unique'], interval: 'month', filter: range('2022-01-01T00:00:00', '2022-11-01T00:00:00') })
        .source,
    ).toBe('events');
  });

  it('serves unique by one key, or filtered on it, from the dimension rollups in any zone and interval', () => {
    for (const timezone of ['UTC', 'America/New_York', 'Asia/Kolkata']) {
      for (const interval of ['day', 'week', 'month']) {
        expect(
          plan({
            measurements: ['unique'],
            interval,
            timezone,
            by: ['$attributed_flow'],
            filter: range('2022-10-01T00:00:00', '2022-11-01T00:00:00'),
          }),
        ).toMatchObject({ source: 'dimension', dimension: '$attributed_flow', needsUnique: true });
      }
    }
    expect(
      plan({
        measurements: ['unique', 'count'],
        filter: [...range('2022-10-01T00:00:00', '2022-11-01T00:00:00'), 'any($attributed_flow,["a","b"])'],
      }),
    ).toMatchObject({ source: 'dimension', dimensionValues: ['a', 'b'] });
  });

  it('serves count and sum by one key, or filtered on it with equals/any, from the dimension rollups', () => {
    const byFlow = plan({
      measurements: ['count', 'sum_value'],
      by: ['$attributed_flow'],
      filter: range('2022-10-01T00:00:00', '2022-11-01T00:00:00'),
    });
    expect(byFlow).toMatchObject({ source: 'dimension', dimension: '$attributed_flow', dimensionValues: null });
    expect(
      plan({
        measurements: ['count'],
        filter: [
          ...range('2022-10-01T00:00:00', '2022-11-01T00:00:00'),
          'any($flow,["a","b","c"])',
          'equals($flow,"b")',
        ],
      }),
    ).toMatchObject({ source: 'dimension', dimension: '$flow', dimensionValues: ['b'] });
    // Two keys, or a filter that looks inside values: raw events.
    for (const extra of [{ by: ['$flow', '$message'] }, { by: ['$flow'], filter: ['contains($flow,"x")'] }]) {
      expect(
        plan({
          measurements: ['count'],
          by: extra.by,
          filter: [...range('2022-10-01T00:00:00', '2022-11-01T00:00:00'), ...(extra.filter ?? [])],
        }).source,
      ).toBe('events');
    }
    expect(
      plan({
        measurements: ['count'],
        by: ['$flow'],
        filter: [...range('2022-10-01T00:00:00', '2022-11-01T00:00:00'), 'equals($message,"m")'],
      }).source,
    ).toBe('events');
  });

  it('gives each whole UTC day of a dimension plan to the bucket holding most of its whole hours', () => {
    const H = 3_600_000;
    const days = (attributes: Record<string, unknown>) =>
      plan({ measurements: ['count'], by: ['$flow'], ...attributes }).days.map((d) => ({
        day: new Date(d.day).toISOString(),
        bucket: d.bucket,
        hours: [(d.lo - d.day) / H, (d.hi - d.day) / H],
      }));
    // UTC days: each day whole in its own bucket.
    expect(days({ filter: range('2024-11-01T00:00:00', '2024-11-03T00:00:00') })).toEqual([
      { day: '2024-11-01T00:00:00.000Z', bucket: 1, hours: [0, 24] },
      { day: '2024-11-02T00:00:00.000Z', bucket: 2, hours: [0, 24] },
    ]);
    // New York across the fall-back (2024-11-03): a UTC day's hours from 04:00 (EDT) or 05:00 (EST) on
    // are the New York day of the same date; the range's first and last UTC days are not whole in it.
    expect(days({ timezone: 'America/New_York', filter: range('2024-11-02T00:00:00', '2024-11-05T00:00:00') })).toEqual(
      [
        { day: '2024-11-03T00:00:00.000Z', bucket: 2, hours: [4, 24] },
        { day: '2024-11-04T00:00:00.000Z', bucket: 3, hours: [5, 24] },
      ],
    );
    // Asia/Kolkata (+05:30): the New Delhi day ends at 18:30 UTC, so 18 whole hours of a UTC day are in it.
    expect(days({ timezone: 'Asia/Kolkata', filter: range('2024-11-01T00:00:00', '2024-11-03T00:00:00') })).toEqual([
      { day: '2024-11-01T00:00:00.000Z', bucket: 1, hours: [0, 18] },
    ]);
    // Weeks: every UTC day of a UTC week; in New York, the day that a week boundary cuts goes to the
    // week that holds most of it.
    expect(days({ interval: 'week', filter: range('2024-11-04T00:00:00', '2024-11-18T00:00:00') })).toHaveLength(14);
    expect(
      days({
        interval: 'week',
        timezone: 'America/New_York',
        filter: range('2024-11-04T00:00:00', '2024-11-18T00:00:00'),
      }).filter((d) => d.hours[0] !== 0 || d.hours[1] !== 24),
    ).toEqual([{ day: '2024-11-11T00:00:00.000Z', bucket: 2, hours: [5, 24] }]);
    // Hourly buckets: no day is worth its row.
    expect(days({ interval: 'hour', filter: range('2024-11-01T00:00:00', '2024-11-03T00:00:00') })).toEqual([]);
  });

  it('keeps hourly rollups for count and sum, and for unique per hour', () => {
    expect(
      plan({ measurements: ['count', 'sum_value'], filter: range('2022-01-01T00:00:00', '2022-12-31T00:00:00') })
        .source,
    ).toBe('rollups');
    expect(
      plan({ measurements: ['unique'], interval: 'hour', filter: range('2022-10-01T00:00:00', '2022-10-08T00:00:00') })
        .source,
    ).toBe('rollups');
  });
});
