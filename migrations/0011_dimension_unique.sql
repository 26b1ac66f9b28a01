-- `unique` by one event property, or filtered on it (equals/any), served exactly from rollups
-- (docs/breakdowns.md, "Unique by a dimension").
--
-- Per (metric, dimension, UTC hour, value, profile) the number of the profile's events of that hour
-- whose property has that value. A reader counts distinct profiles per bucket and value over the rows
-- of a bucket's clean hours (and raw events for its dirty and cut hours), so the answer is exact for
-- any bucket, in any zone and interval. Events without the property (absent, JSON null or "") and
-- events without a profile have no row: a profile has an event without the property in an hour
-- exactly when its events there outnumber its rows' events, which a reader counts from the events'
-- covering index (metric_id, "timestamp") INCLUDE (value, profile_id) without reading properties.
-- Same contract and writers as klaviyo_dimension_rollups (migrations/0007): exact for every hour that
-- is not marked dirty, for a key that is ready here and in klaviyo_rollup_dimensions and has no
-- fallback for the metric. The account leads the key (migrations/0010); the primary key carries the
-- count, so a read is one index-only range scan.
CREATE TABLE klaviyo_dimension_profiles (
    account_id       text         NOT NULL,
    metric_id        varchar(64)  NOT NULL,
    dimension        text         NOT NULL,
    bucket           timestamptz  NOT NULL,
    dimension_value  text         NOT NULL,
    profile_id       varchar(64)  NOT NULL,
    event_count      integer      NOT NULL,
    PRIMARY KEY (account_id, metric_id, dimension, bucket, dimension_value, profile_id) INCLUDE (event_count)
);

-- The keys whose distinct profiles are rolled up (global, as klaviyo_rollup_dimensions): about a row per event that carries the key, so
-- only the keys a dashboard counts unique profiles by (attribution by default; the operator adds keys
-- with ROLLUP_UNIQUE_DIMENSIONS). ready_at is NULL until the events stored before the key was
-- registered are counted (npm run backfill -- --dimensions); until then readers use raw events.
CREATE TABLE klaviyo_rollup_unique_dimensions (
    dimension        text         PRIMARY KEY,
    registered_at    timestamptz  NOT NULL DEFAULT now(),
    ready_at         timestamptz
);

-- A unique key is also a rolled-up key (its count and sum, and its cardinality check, come from there).
INSERT INTO klaviyo_rollup_dimensions (dimension, ready_at)
SELECT d, CASE WHEN EXISTS (SELECT 1 FROM klaviyo_events) THEN NULL ELSE now() END
FROM unnest(ARRAY['$attributed_channel', '$attributed_flow', '$attributed_message', '$attributed_variation']) AS d
ON CONFLICT (dimension) DO NOTHING;

INSERT INTO klaviyo_rollup_unique_dimensions (dimension, ready_at)
SELECT d, CASE WHEN EXISTS (SELECT 1 FROM klaviyo_events) THEN NULL ELSE now() END
FROM unnest(ARRAY['$attributed_channel', '$attributed_flow', '$attributed_message', '$attributed_variation']) AS d;

DO $timescale$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('klaviyo_dimension_profiles', 'bucket', chunk_time_interval => INTERVAL '90 days');
        ALTER TABLE klaviyo_dimension_profiles SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'account_id, metric_id, dimension',
            timescaledb.compress_orderby = 'bucket DESC, dimension_value, profile_id'
        );
        PERFORM add_compression_policy('klaviyo_dimension_profiles', INTERVAL '400 days');
    END IF;
END
$timescale$;
