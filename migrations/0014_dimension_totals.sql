-- The metric's totals in the dimension tables (docs/breakdowns.md, "The totals row").
--
-- A breakdown's "" row (the events without the key's value) is the total minus the key's rows. The
-- total came from the hourly rollups, which have no daily tier, so a breakdown by day read every hourly
-- total of its range beside one daily row per value and day, and that read set its cost for a sparse key.
-- The totals now live in the dimension tables under the pseudo-key "" (value ""): the same writers keep
-- them with the keys' rows, hourly and daily, by the same deltas and recounts, so a reader takes a
-- day's total from one daily row and moves hours exactly as it does for a key's rows. A configured key
-- cannot be "" (lib/config.ts), so no registered key shares the rows.
--
-- Filled here from the hourly rollups, which hold the same events: for every hour, what its rollup
-- has counted (a dirty hour's pending events are added to both by the batch that takes its mark, and
-- a dirty hour without pending rows is recounted in both).
INSERT INTO klaviyo_dimension_rollups (account_id, metric_id, dimension, bucket, dimension_value, event_count, sum_value)
SELECT account_id, metric_id, '', bucket, '', event_count, sum_value
FROM klaviyo_aggregated_metrics
WHERE granularity = 'hour' AND event_count > 0;

INSERT INTO klaviyo_dimension_daily_rollups (account_id, metric_id, dimension, day, dimension_value, event_count, sum_value)
SELECT account_id, metric_id, '', date_trunc('day', bucket, 'UTC'), '', sum(event_count), sum(sum_value)
FROM klaviyo_aggregated_metrics
WHERE granularity = 'hour' AND event_count > 0
GROUP BY account_id, metric_id, date_trunc('day', bucket, 'UTC');
