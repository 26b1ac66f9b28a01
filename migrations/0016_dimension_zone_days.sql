-- Breakdowns by day in other time zones than UTC (docs/breakdowns.md, "Days in other zones").
--
-- klaviyo_dimension_daily_rollups holds UTC days. A day in a zone with another offset is a UTC day's
-- row plus and minus the hourly rows of the hours it shares with its neighbours (5 hours of every
-- New York day), and a breakdown over a year then reads several times as many rows as in UTC. The
-- operator names the zones the dashboards use (ROLLUP_DAY_ZONES); each gets daily rows of its own here,
-- kept by the same writers and deltas as the UTC days.
--
-- `day` is the instant the local day starts; a day is 23, 24 or 25 hours. Only zones whose days start
-- on a whole UTC hour can be built from hourly rows (lib/config.ts refuses the others).
CREATE TABLE klaviyo_dimension_zone_daily_rollups (
    account_id       text         NOT NULL,
    metric_id        varchar(64)  NOT NULL,
    zone             text         NOT NULL,
    dimension        text         NOT NULL,
    day              timestamptz  NOT NULL,
    dimension_value  text         NOT NULL,
    event_count      bigint       NOT NULL,
    sum_value        numeric      NOT NULL,
    PRIMARY KEY (account_id, metric_id, zone, dimension, day, dimension_value)
) WITH (fillfactor = 70);

-- The zones with daily rows. The aggregator adds to a zone's rows from the moment it is registered;
-- ready_at is NULL until every day stored before that has been filled from the hourly rows
-- (npm run backfill -- --dimensions), and until then readers take that zone's days from UTC days.
CREATE TABLE klaviyo_rollup_day_zones (
    zone             text         PRIMARY KEY,
    registered_at    timestamptz  NOT NULL DEFAULT now(),
    ready_at         timestamptz
);

DO $timescale$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('klaviyo_dimension_zone_daily_rollups', 'day', chunk_time_interval => INTERVAL '365 days');
        ALTER TABLE klaviyo_dimension_zone_daily_rollups SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'account_id, metric_id, zone, dimension',
            timescaledb.compress_orderby = 'day DESC, dimension_value'
        );
        PERFORM add_compression_policy('klaviyo_dimension_zone_daily_rollups', INTERVAL '400 days');
    END IF;
END
$timescale$;
