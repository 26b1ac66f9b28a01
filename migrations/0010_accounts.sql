-- Many Klaviyo accounts in one deployment (docs/scaling.md). Every table that holds an account's data
-- gets account_id, and it leads every primary key, foreign key and index, so that each statement
-- touches one account's rows (and, on Citus, one shard: the tables are distributed by account_id).
-- The rows stored so far become the account 'default', in place: the column is added with that
-- default (a change of the catalog only, no table rewrite), which is then dropped, so that a writer
-- that forgets the account fails instead of writing into 'default'.
-- What stays global: klaviyo_rollup_dimensions, the configured property keys that are rolled up
-- (configuration, the same for every account; a Citus reference table), and schema_migrations.

-- One row per account. Its row lock is the aggregator's per-account lock (lib/repositories/accounts.ts):
-- a row lock, not an advisory lock, because it behaves the same on Citus (the row lives on the
-- account's shard) and shows up in pg_locks with the account it belongs to.
CREATE TABLE klaviyo_accounts (
    account_id             text         PRIMARY KEY CHECK (account_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    display_name           text,
    -- The Secrets Manager secret (ARN or name) holding this account's Klaviyo private key, for the sync.
    -- NULL for the default account: its key is configured as before (KLAVIYO_API_KEY_SECRET_ID).
    klaviyo_key_secret_id  text,
    created_at             timestamptz  NOT NULL DEFAULT now()
);
INSERT INTO klaviyo_accounts (account_id, display_name) VALUES ('default', 'default');

-- TimescaleDB: a compressed chunk cannot change its keys, and the compression settings cannot change
-- while a chunk is compressed. Decompress, and switch compression off until the keys are rebuilt;
-- the second block below switches it back on with account_id leading segmentby, and the policies
-- compress the old chunks again on their next run.
DO $timescale$
DECLARE
    t text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        FOREACH t IN ARRAY ARRAY['klaviyo_events', 'klaviyo_aggregated_metrics', 'klaviyo_dimension_rollups',
                                 'klaviyo_dimension_daily_rollups'] LOOP
            PERFORM remove_compression_policy(t::regclass, if_exists => true);
            PERFORM decompress_chunk(c, true) FROM show_chunks(t::regclass) AS c;
            EXECUTE format('ALTER TABLE %I SET (timescaledb.compress = false)', t);
        END LOOP;
    END IF;
END
$timescale$;

-- Foreign keys first: they depend on the primary keys replaced below.
ALTER TABLE klaviyo_events DROP CONSTRAINT klaviyo_events_metric_id_fkey;
ALTER TABLE klaviyo_events DROP CONSTRAINT klaviyo_events_profile_id_fkey;
ALTER TABLE klaviyo_aggregated_metrics DROP CONSTRAINT klaviyo_aggregated_metrics_metric_id_fkey;

ALTER TABLE klaviyo_metrics ADD COLUMN account_id text NOT NULL DEFAULT 'default';
ALTER TABLE klaviyo_profiles ADD COLUMN account_id text NOT NULL DEFAULT 'default';
ALTER TABLE klaviyo_events ADD COLUMN account_id text NOT NULL DEFAULT 'default';
ALTER TABLE klaviyo_aggregated_metrics ADD COLUMN account_id text NOT NULL DEFAULT 'default';
ALTER TABLE klaviyo_aggregate_dirty ADD COLUMN account_id text NOT NULL DEFAULT 'default';
ALTER TABLE klaviyo_aggregate_pending ADD COLUMN account_id text NOT NULL DEFAULT 'default';
ALTER TABLE klaviyo_aggregate_adjustments ADD COLUMN account_id text NOT NULL DEFAULT 'default';
ALTER TABLE klaviyo_profile_hours ADD COLUMN account_id text NOT NULL DEFAULT 'default';
ALTER TABLE klaviyo_dimension_rollups ADD COLUMN account_id text NOT NULL DEFAULT 'default';
ALTER TABLE klaviyo_dimension_daily_rollups ADD COLUMN account_id text NOT NULL DEFAULT 'default';
ALTER TABLE klaviyo_dimension_fallbacks ADD COLUMN account_id text NOT NULL DEFAULT 'default';

ALTER TABLE klaviyo_metrics ALTER COLUMN account_id DROP DEFAULT;
ALTER TABLE klaviyo_profiles ALTER COLUMN account_id DROP DEFAULT;
ALTER TABLE klaviyo_events ALTER COLUMN account_id DROP DEFAULT;
ALTER TABLE klaviyo_aggregated_metrics ALTER COLUMN account_id DROP DEFAULT;
ALTER TABLE klaviyo_aggregate_dirty ALTER COLUMN account_id DROP DEFAULT;
ALTER TABLE klaviyo_aggregate_pending ALTER COLUMN account_id DROP DEFAULT;
ALTER TABLE klaviyo_aggregate_adjustments ALTER COLUMN account_id DROP DEFAULT;
ALTER TABLE klaviyo_profile_hours ALTER COLUMN account_id DROP DEFAULT;
ALTER TABLE klaviyo_dimension_rollups ALTER COLUMN account_id DROP DEFAULT;
ALTER TABLE klaviyo_dimension_daily_rollups ALTER COLUMN account_id DROP DEFAULT;
ALTER TABLE klaviyo_dimension_fallbacks ALTER COLUMN account_id DROP DEFAULT;

-- Primary keys: the account first, then the key each table had.
ALTER TABLE klaviyo_metrics DROP CONSTRAINT klaviyo_metrics_pkey, ADD PRIMARY KEY (account_id, id);
ALTER TABLE klaviyo_profiles DROP CONSTRAINT klaviyo_profiles_pkey, ADD PRIMARY KEY (account_id, id);
-- TimescaleDB: the time column stays in every unique index of a hypertable.
ALTER TABLE klaviyo_events DROP CONSTRAINT klaviyo_events_pkey, ADD PRIMARY KEY (account_id, id, "timestamp");
ALTER TABLE klaviyo_aggregated_metrics DROP CONSTRAINT klaviyo_aggregated_metrics_pkey,
    ADD PRIMARY KEY (account_id, metric_id, granularity, bucket);
ALTER TABLE klaviyo_aggregate_dirty DROP CONSTRAINT klaviyo_aggregate_dirty_pkey,
    ADD PRIMARY KEY (account_id, metric_id, bucket);
ALTER TABLE klaviyo_aggregate_pending DROP CONSTRAINT klaviyo_aggregate_pending_pkey,
    ADD PRIMARY KEY (account_id, metric_id, bucket, event_id, "timestamp");
ALTER TABLE klaviyo_aggregate_adjustments DROP CONSTRAINT klaviyo_aggregate_adjustments_pkey,
    ADD PRIMARY KEY (account_id, metric_id, bucket);
ALTER TABLE klaviyo_profile_hours DROP CONSTRAINT klaviyo_profile_hours_pkey,
    ADD PRIMARY KEY (account_id, metric_id, profile_id, bucket);
ALTER TABLE klaviyo_dimension_rollups DROP CONSTRAINT klaviyo_dimension_rollups_pkey,
    ADD PRIMARY KEY (account_id, metric_id, dimension, bucket, dimension_value) INCLUDE (event_count, sum_value);
ALTER TABLE klaviyo_dimension_daily_rollups DROP CONSTRAINT klaviyo_dimension_daily_rollups_pkey,
    ADD PRIMARY KEY (account_id, metric_id, dimension, day, dimension_value) INCLUDE (event_count, sum_value);
ALTER TABLE klaviyo_dimension_fallbacks DROP CONSTRAINT klaviyo_dimension_fallbacks_pkey,
    ADD PRIMARY KEY (account_id, metric_id, dimension);

-- Composite foreign keys: an event or a rollup can only name a metric (or profile) of its own account.
ALTER TABLE klaviyo_events ADD CONSTRAINT klaviyo_events_metric_fkey
    FOREIGN KEY (account_id, metric_id) REFERENCES klaviyo_metrics (account_id, id);
ALTER TABLE klaviyo_events ADD CONSTRAINT klaviyo_events_profile_fkey
    FOREIGN KEY (account_id, profile_id) REFERENCES klaviyo_profiles (account_id, id);
ALTER TABLE klaviyo_aggregated_metrics ADD CONSTRAINT klaviyo_aggregated_metrics_metric_fkey
    FOREIGN KEY (account_id, metric_id) REFERENCES klaviyo_metrics (account_id, id);

-- Secondary indexes, each with the account in front of what it had.
DROP INDEX klaviyo_metrics_name_idx;
CREATE INDEX klaviyo_metrics_name_idx ON klaviyo_metrics (account_id, name);

DROP INDEX klaviyo_profiles_email_idx;
CREATE INDEX klaviyo_profiles_email_idx ON klaviyo_profiles (account_id, lower(email)) WHERE email IS NOT NULL;
DROP INDEX klaviyo_profiles_phone_idx;
CREATE INDEX klaviyo_profiles_phone_idx ON klaviyo_profiles (account_id, phone_number) WHERE phone_number IS NOT NULL;
DROP INDEX klaviyo_profiles_external_id_idx;
CREATE INDEX klaviyo_profiles_external_id_idx ON klaviyo_profiles (account_id, external_id) WHERE external_id IS NOT NULL;
DROP INDEX klaviyo_profiles_created_id_idx;
CREATE INDEX klaviyo_profiles_created_id_idx ON klaviyo_profiles (account_id, created, id);
DROP INDEX klaviyo_profiles_updated_id_idx;
CREATE INDEX klaviyo_profiles_updated_id_idx ON klaviyo_profiles (account_id, updated, id);
DROP INDEX klaviyo_profiles_email_id_idx;
CREATE INDEX klaviyo_profiles_email_id_idx ON klaviyo_profiles (account_id, email, id);
DROP INDEX klaviyo_profiles_kx_idx;
CREATE INDEX klaviyo_profiles_kx_idx ON klaviyo_profiles (account_id, kx) WHERE kx IS NOT NULL;
DROP INDEX klaviyo_profiles_anonymous_id_idx;
CREATE INDEX klaviyo_profiles_anonymous_id_idx ON klaviyo_profiles (account_id, anonymous_id) WHERE anonymous_id IS NOT NULL;

DROP INDEX klaviyo_events_metric_time_idx;
CREATE INDEX klaviyo_events_metric_time_idx ON klaviyo_events (account_id, metric_id, "timestamp" DESC) INCLUDE (value, profile_id);
DROP INDEX klaviyo_events_profile_time_idx;
CREATE INDEX klaviyo_events_profile_time_idx ON klaviyo_events (account_id, profile_id, "timestamp" DESC, id DESC);
DROP INDEX klaviyo_events_time_idx;
CREATE INDEX klaviyo_events_time_idx ON klaviyo_events (account_id, "timestamp" DESC, id DESC);

DROP INDEX klaviyo_aggregated_metrics_figures_idx;
CREATE INDEX klaviyo_aggregated_metrics_figures_idx ON klaviyo_aggregated_metrics (account_id, metric_id, granularity, bucket)
    INCLUDE (event_count, sum_value, unique_profiles);

-- The aggregator takes an account's oldest marks first and reports its lag from this index.
DROP INDEX klaviyo_aggregate_dirty_marked_idx;
CREATE INDEX klaviyo_aggregate_dirty_marked_idx ON klaviyo_aggregate_dirty (account_id, first_marked_at);

DROP INDEX klaviyo_profile_hours_bucket_metric_idx;
CREATE INDEX klaviyo_profile_hours_bucket_metric_idx ON klaviyo_profile_hours (account_id, bucket, metric_id);

DO $timescale$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        ALTER TABLE klaviyo_events SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'account_id, metric_id',
            timescaledb.compress_orderby = '"timestamp" DESC, id'
        );
        PERFORM add_compression_policy('klaviyo_events', INTERVAL '60 days');
        ALTER TABLE klaviyo_aggregated_metrics SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'account_id, metric_id, granularity',
            timescaledb.compress_orderby = 'bucket DESC'
        );
        PERFORM add_compression_policy('klaviyo_aggregated_metrics', INTERVAL '400 days');
        ALTER TABLE klaviyo_dimension_rollups SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'account_id, metric_id, dimension',
            timescaledb.compress_orderby = 'bucket DESC, dimension_value'
        );
        PERFORM add_compression_policy('klaviyo_dimension_rollups', INTERVAL '400 days');
        ALTER TABLE klaviyo_dimension_daily_rollups SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'account_id, metric_id, dimension',
            timescaledb.compress_orderby = 'day DESC, dimension_value'
        );
        PERFORM add_compression_policy('klaviyo_dimension_daily_rollups', INTERVAL '400 days');
    END IF;
END
$timescale$;
