-- Breakdowns from rollups: `by` one event property and equals/any filters on it (docs/breakdowns.md).
--
-- Per (metric, dimension, UTC hour, value) the count and sum of the events whose property has that
-- value. Events without the property (absent, JSON null or "") have no row: readers take them as the
-- hour's total (klaviyo_aggregated_metrics) minus its rows, which keeps the table to the values that
-- occur instead of one "" row per registered dimension, metric and hour.
-- Same contract as the hourly rollups: exact for every hour that is not marked dirty, written by the
-- aggregator under its lock in the batch that takes the hour's mark (lib/aggregation/rollup.ts).
-- Keyed so that an account id can lead it; the primary key carries the figures, so a breakdown over a
-- year is one index-only range scan.
CREATE TABLE klaviyo_dimension_rollups (
    metric_id        varchar(64)  NOT NULL,
    dimension        text         NOT NULL,
    bucket           timestamptz  NOT NULL,
    dimension_value  text         NOT NULL,
    event_count      bigint       NOT NULL,
    sum_value        numeric      NOT NULL,
    PRIMARY KEY (metric_id, dimension, bucket, dimension_value) INCLUDE (event_count, sum_value)
);

-- The same figures per UTC day: always the sum of the day's hourly rows above (every writer changes both
-- in one statement, by the same deltas), so a day none of whose hours is marked dirty is exact. A
-- breakdown by day, week or month over a year reads a 24th of the hourly rows from here. A value whose
-- hours all went away may keep a row of zeros; readers skip it.
CREATE TABLE klaviyo_dimension_daily_rollups (
    metric_id        varchar(64)  NOT NULL,
    dimension        text         NOT NULL,
    day              timestamptz  NOT NULL,
    dimension_value  text         NOT NULL,
    event_count      bigint       NOT NULL,
    sum_value        numeric      NOT NULL,
    PRIMARY KEY (metric_id, dimension, day, dimension_value) INCLUDE (event_count, sum_value)
);

-- The property keys that are rolled up. ready_at is NULL until every event stored before the key was
-- registered has been counted (npm run backfill -- --dimensions); until then readers use raw events
-- for the key, while the aggregator already counts every new event for it.
CREATE TABLE klaviyo_rollup_dimensions (
    dimension        text         PRIMARY KEY,
    registered_at    timestamptz  NOT NULL DEFAULT now(),
    ready_at         timestamptz
);

-- (metric, dimension) pairs left to raw events: too many distinct values in an hour for a rollup to
-- be smaller than the events, or a value too long for an index key. The aggregator writes the row
-- and removes the pair's rollups in the same transaction; readers check it in their statement.
CREATE TABLE klaviyo_dimension_fallbacks (
    metric_id        varchar(64)  NOT NULL,
    dimension        text         NOT NULL,
    reason           text         NOT NULL CHECK (reason IN ('cardinality', 'value_length')),
    bucket           timestamptz  NOT NULL,
    distinct_values  integer      NOT NULL,
    decided_at       timestamptz  NOT NULL DEFAULT now(),
    PRIMARY KEY (metric_id, dimension)
);

-- Klaviyo's documented `by` dimensions (Query Metric Aggregates, revision 2026-07-15). With no event
-- stored yet there is nothing to backfill: they are ready at once.
INSERT INTO klaviyo_rollup_dimensions (dimension, ready_at)
SELECT d, CASE WHEN EXISTS (SELECT 1 FROM klaviyo_events) THEN NULL ELSE now() END
FROM unnest(ARRAY[
    '$attributed_channel', '$attributed_flow', '$attributed_message', '$attributed_variation', '$campaign_channel',
    '$flow', '$flow_channel', '$message', '$message_send_cohort', '$usage_amount', '$value_currency', '$variation',
    '$variation_send_cohort', 'Bot Click', 'Bounce Type', 'Campaign Name', 'Client Canonical', 'Client Name',
    'Client Type', 'Email Domain', 'Failure Source', 'Failure Type', 'From Number', 'From Phone Region',
    'Inbox Provider', 'List', 'Message Format', 'Message Name', 'Message Type', 'Method', 'Segment Count', 'Subject',
    'To Number', 'To Phone Region', 'URL', 'form_id'
]) AS d;

DO $timescale$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('klaviyo_dimension_rollups', 'bucket', chunk_time_interval => INTERVAL '90 days');
        ALTER TABLE klaviyo_dimension_rollups SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'metric_id, dimension',
            timescaledb.compress_orderby = 'bucket DESC, dimension_value'
        );
        PERFORM add_compression_policy('klaviyo_dimension_rollups', INTERVAL '400 days');
        PERFORM create_hypertable('klaviyo_dimension_daily_rollups', 'day', chunk_time_interval => INTERVAL '365 days');
        ALTER TABLE klaviyo_dimension_daily_rollups SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'metric_id, dimension',
            timescaledb.compress_orderby = 'day DESC, dimension_value'
        );
        PERFORM add_compression_policy('klaviyo_dimension_daily_rollups', INTERVAL '400 days');
    END IF;
END
$timescale$;
