-- The four Klaviyo tables, and what ingestion and incremental aggregation need.
-- One file serves plain PostgreSQL and TimescaleDB: the TimescaleDB branch is the DO block at the end.

CREATE TABLE klaviyo_metrics (
    id               varchar(64)  PRIMARY KEY,
    name             text         NOT NULL,
    integration      jsonb,
    created          timestamptz,
    updated          timestamptz,
    raw_data         jsonb,
    -- A stub row stands in for a metric that an event referenced before the metric itself arrived;
    -- the next upsert of the real resource fills it in whatever its `updated`.
    is_stub          boolean      NOT NULL DEFAULT false,
    ingested_at      timestamptz  NOT NULL DEFAULT now()
);
CREATE INDEX klaviyo_metrics_name_idx ON klaviyo_metrics (name);

CREATE TABLE klaviyo_profiles (
    id               varchar(64)  PRIMARY KEY,
    email            text,
    phone_number     text,
    external_id      text,
    anonymous_id     text,
    first_name       text,
    last_name        text,
    organization     text,
    locale           text,
    title            text,
    image            text,
    location         jsonb,
    properties       jsonb,
    created          timestamptz,
    updated          timestamptz,
    -- As Klaviyo stated it on the resource. Readers answer the later of this and the profile's
    -- newest event (klaviyo_events_profile_time_idx): ingest never rewrites profiles to move it.
    last_event_date  timestamptz,
    raw_data         jsonb,
    is_stub          boolean      NOT NULL DEFAULT false,
    ingested_at      timestamptz  NOT NULL DEFAULT now()
);
-- Klaviyo matches emails case-insensitively.
CREATE INDEX klaviyo_profiles_email_idx ON klaviyo_profiles (lower(email)) WHERE email IS NOT NULL;
CREATE INDEX klaviyo_profiles_phone_idx ON klaviyo_profiles (phone_number) WHERE phone_number IS NOT NULL;
CREATE INDEX klaviyo_profiles_external_id_idx ON klaviyo_profiles (external_id) WHERE external_id IS NOT NULL;
CREATE INDEX klaviyo_profiles_updated_idx ON klaviyo_profiles (updated);

CREATE TABLE klaviyo_events (
    id               varchar(64)  NOT NULL,
    "timestamp"      timestamptz  NOT NULL,
    metric_id        varchar(64)  NOT NULL REFERENCES klaviyo_metrics (id),
    profile_id       varchar(64)  REFERENCES klaviyo_profiles (id),
    -- Exact money: numeric has no cap and no binary rounding; sums over a year stay exact.
    value            numeric,
    value_currency   text,
    uuid             text,
    unique_id        text,
    properties       jsonb        NOT NULL DEFAULT '{}'::jsonb,
    raw_data         jsonb        NOT NULL,
    ingested_at      timestamptz  NOT NULL DEFAULT now(),
    -- TimescaleDB requires every unique index of a hypertable to contain the partitioning column,
    -- so the key is (id, timestamp) rather than id alone. De-duplication stays exact because an
    -- event's time never changes: Klaviyo's events are immutable, and a re-delivered event carries
    -- the same id and the same timestamp, so it meets this key and is skipped.
    PRIMARY KEY (id, "timestamp")
);
-- Aggregates from raw events read only this index (index-only scan): count, sum, min, max and
-- unique profiles of one metric over a time range never touch the heap.
CREATE INDEX klaviyo_events_metric_time_idx ON klaviyo_events (metric_id, "timestamp" DESC) INCLUDE (value, profile_id);
-- A profile's timeline, newest first, with (timestamp, id) as the keyset cursor.
CREATE INDEX klaviyo_events_profile_time_idx ON klaviyo_events (profile_id, "timestamp" DESC, id DESC);
-- Export in time order across metrics (GET /api/events without a metric filter).
CREATE INDEX klaviyo_events_time_idx ON klaviyo_events ("timestamp" DESC, id DESC);

-- Rollups. Average is never stored: it is sum_value / event_count when read, so re-aggregating
-- buckets never averages averages. unique_profiles is exact for its own bucket only (distinct
-- counts do not add up across buckets).
CREATE TABLE klaviyo_aggregated_metrics (
    metric_id        varchar(64)  NOT NULL REFERENCES klaviyo_metrics (id),
    granularity      text         NOT NULL CHECK (granularity IN ('hour', 'day', 'week', 'month')),
    bucket           timestamptz  NOT NULL,
    event_count      bigint       NOT NULL,
    sum_value        numeric      NOT NULL,
    min_value        numeric,
    max_value        numeric,
    unique_profiles  bigint       NOT NULL,
    updated_at       timestamptz  NOT NULL DEFAULT now(),
    PRIMARY KEY (metric_id, granularity, bucket)
);

-- The (metric, UTC hour) buckets that changed since the aggregator last saw them. Ingest upserts
-- into it in the same transaction as the events (taking a row lock until it commits); the
-- aggregator takes rows with DELETE ... RETURNING, skipping locked ones. A bucket whose events are
-- not yet committed therefore can never be taken and forgotten, which a watermark on ingested_at
-- cannot promise.
CREATE TABLE klaviyo_aggregate_dirty (
    metric_id        varchar(64)  NOT NULL,
    bucket           timestamptz  NOT NULL,
    first_marked_at  timestamptz  NOT NULL DEFAULT now(),
    PRIMARY KEY (metric_id, bucket)
);
-- The aggregator takes the oldest marks first (so the lag it reports is bounded by its batches) and
-- reports min(first_marked_at) as its lag: both read this index instead of sorting the whole table
-- after a bulk load has marked tens of thousands of hours. Re-marking keeps first_marked_at unchanged,
-- so ingest's upserts stay HOT updates and never touch this index.
CREATE INDEX klaviyo_aggregate_dirty_marked_idx ON klaviyo_aggregate_dirty (first_marked_at);

-- The events ingest inserted that no rollup has counted yet: one row per event really inserted,
-- written by the statement that inserts the event (so both commit together). The aggregator takes a
-- marked bucket's rows and adds their count, sum, min, max and new profiles to the stored rollup, so
-- a run costs what was ingested, not what the touched hours hold. Deltas are exact because events
-- are never updated or deleted (ingest inserts ON CONFLICT DO NOTHING). A plain table on TimescaleDB
-- too: rows live minutes, and the aggregator reads them by bucket.
CREATE TABLE klaviyo_aggregate_pending (
    metric_id        varchar(64)  NOT NULL,
    bucket           timestamptz  NOT NULL,
    event_id         varchar(64)  NOT NULL,
    "timestamp"      timestamptz  NOT NULL,
    profile_id       varchar(64),
    value            numeric,
    PRIMARY KEY (metric_id, bucket, event_id, "timestamp")
);

DO $timescale$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        -- 7-day chunks: a year of events is 53 chunks, and a chunk of a busy account's week
        -- (a few million rows with its indexes) stays well within memory.
        PERFORM create_hypertable('klaviyo_events', 'timestamp', chunk_time_interval => INTERVAL '7 days');
        -- Rollups are ~1/50 of the events' rows: 90-day chunks keep their chunk count small.
        PERFORM create_hypertable('klaviyo_aggregated_metrics', 'bucket', chunk_time_interval => INTERVAL '90 days');
        -- Compression must be enabled before a policy can be added.
        ALTER TABLE klaviyo_events SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'metric_id',
            timescaledb.compress_orderby = '"timestamp" DESC, id'
        );
        -- Late events keep arriving for weeks (Klaviyo backfills, sync retries); compress after 60 days
        -- so that most late writes meet uncompressed chunks.
        PERFORM add_compression_policy('klaviyo_events', INTERVAL '60 days');
        ALTER TABLE klaviyo_aggregated_metrics SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'metric_id, granularity',
            timescaledb.compress_orderby = 'bucket DESC'
        );
        PERFORM add_compression_policy('klaviyo_aggregated_metrics', INTERVAL '400 days');
    END IF;
END
$timescale$;
