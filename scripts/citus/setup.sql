-- Citus: distribute the schema by account (docs/scaling.md, "Moving to Citus").
--
-- Run once, on the Citus coordinator, as a superuser, after `npm run migrate` has brought the schema to
-- the newest migration on PLAIN PostgreSQL (not TimescaleDB: the two extensions cannot share a database,
-- see docs/scaling.md), with the workers added (citus_add_node) and the functions stopped:
--
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f scripts/citus/setup.sql
--
-- Every account-scoped table is hash-distributed on account_id, all in ONE co-location group anchored on
-- klaviyo_accounts and klaviyo_metrics: an account's rows of every table live in the same shard group on
-- the same worker, so each statement of the application (one account, see
-- tests/accounts/statements.test.ts) is routed whole to one worker, its joins and foreign keys stay local,
-- and the aggregator's transaction (the account row's lock, then marks, pending rows and rollups) commits
-- on one node without two-phase commit.
--
-- Order matters: a foreign key between distributed tables must join co-located tables on the
-- distribution column, so a referenced table is distributed before the tables that reference it
-- (accounts, then metrics and profiles, then events and rollups). The data present is moved to the
-- shards by each call; on a large database, plan a maintenance window (or see Citus's
-- create_distributed_table_concurrently, which has conditions of its own).
--
-- The whole script is one transaction: it distributes every table or none.

\set ON_ERROR_STOP on

BEGIN;

CREATE EXTENSION IF NOT EXISTS citus;

-- Global rows, the same for every account: replicated to every worker, so that a statement on one
-- account's shard can still read them locally.
--   klaviyo_rollup_dimensions: which event properties are rolled up (configuration);
--   klaviyo_rollup_unique_dimensions: which of them keep distinct profiles;
--   klaviyo_rollup_dimension_generation: the registry's generation, raised by a row trigger on
--   klaviyo_rollup_dimensions (migration 0012). Citus runs triggers on reference tables only with
--   citus.enable_unsafe_triggers; should it refuse, the raise belongs in registerKeys instead.
--   klaviyo_rollup_day_zones: the zones whose days have daily rows of their own (configuration).
SELECT create_reference_table('klaviyo_rollup_dimensions');
SELECT create_reference_table('klaviyo_rollup_unique_dimensions');
SELECT create_reference_table('klaviyo_rollup_dimension_generation');
SELECT create_reference_table('klaviyo_rollup_day_zones');

-- schema_migrations stays a plain table on the coordinator: only lib/db/migrate.ts reads it, alone.

-- The anchor of the co-location group: one row per account, its lock row for the aggregator.
SELECT create_distributed_table('klaviyo_accounts', 'account_id', colocate_with => 'none');

-- Resources, referenced by events and rollups (composite foreign keys on (account_id, ...)).
SELECT create_distributed_table('klaviyo_metrics', 'account_id', colocate_with => 'klaviyo_accounts');
SELECT create_distributed_table('klaviyo_profiles', 'account_id', colocate_with => 'klaviyo_metrics');

-- Events: no foreign keys since migration 0012 (the ingest transaction stores the metric and profile
-- each event names); co-located with them all the same, so an account's joins stay on one worker.
SELECT create_distributed_table('klaviyo_events', 'account_id', colocate_with => 'klaviyo_metrics');

-- The aggregator's rollups and bookkeeping.
SELECT create_distributed_table('klaviyo_aggregated_metrics', 'account_id', colocate_with => 'klaviyo_metrics');
SELECT create_distributed_table('klaviyo_aggregate_dirty', 'account_id', colocate_with => 'klaviyo_metrics');
SELECT create_distributed_table('klaviyo_aggregate_pending', 'account_id', colocate_with => 'klaviyo_metrics');
SELECT create_distributed_table('klaviyo_aggregate_adjustments', 'account_id', colocate_with => 'klaviyo_metrics');
SELECT create_distributed_table('klaviyo_profile_hours', 'account_id', colocate_with => 'klaviyo_metrics');

-- Breakdowns: dimension rollups, hourly, daily and daily in other zones, and the keys left to raw events.
SELECT create_distributed_table('klaviyo_dimension_rollups', 'account_id', colocate_with => 'klaviyo_metrics');
SELECT create_distributed_table('klaviyo_dimension_daily_rollups', 'account_id', colocate_with => 'klaviyo_metrics');
SELECT create_distributed_table('klaviyo_dimension_zone_daily_rollups', 'account_id', colocate_with => 'klaviyo_metrics');
SELECT create_distributed_table('klaviyo_dimension_fallbacks', 'account_id', colocate_with => 'klaviyo_metrics');
SELECT create_distributed_table('klaviyo_dimension_profiles', 'account_id', colocate_with => 'klaviyo_metrics');

-- Queue messages the ingest consumer could not store.
SELECT create_distributed_table('klaviyo_queue_rejects', 'account_id', colocate_with => 'klaviyo_metrics');

-- The sync's per-account state.
SELECT create_distributed_table('klaviyo_sync_streams', 'account_id', colocate_with => 'klaviyo_metrics');
SELECT create_distributed_table('klaviyo_sync_leases', 'account_id', colocate_with => 'klaviyo_metrics');
SELECT create_distributed_table('klaviyo_sync_rejects', 'account_id', colocate_with => 'klaviyo_metrics');

-- Nothing may be left behind: every table of the schema is distributed, a reference table, or
-- schema_migrations. A table a later migration adds must be added above (the test
-- tests/accounts/citusSetup.test.ts compares this script with the migrated schema).
DO $check$
DECLARE
    missing text;
BEGIN
    SELECT string_agg(c.relname, ', ' ORDER BY c.relname) INTO missing
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname <> 'schema_migrations'
      AND NOT c.relispartition
      AND NOT EXISTS (SELECT 1 FROM pg_dist_partition p WHERE p.logicalrelid = c.oid);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'tables left undistributed: %', missing;
    END IF;
END
$check$;

COMMIT;
