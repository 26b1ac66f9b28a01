-- Pending rows carry what the dimension rollups need, so the aggregator adds a new event to them
-- without reading the event back from klaviyo_events (docs/bookkeeping.md).
--
-- dimension_values: the event's non-empty values of the keys registered in klaviyo_rollup_dimensions
-- when ingest wrote the row, as a JSON object {key: value} (the values as the event carries them, so
-- value->>key is the text the raw path groups by); '{}' when it has none. NULL: not carried (rows
-- written before this migration): the aggregator reads the event's properties instead.
-- dimension_generation: which registry those values were taken against. The aggregator uses them only
-- when the registry is still at that generation; otherwise (a key registered or removed since) it reads
-- the event, so a key registered while the event was in flight is never missed.
ALTER TABLE klaviyo_aggregate_pending
    ADD COLUMN dimension_values      jsonb,
    ADD COLUMN dimension_generation  bigint;

-- One row: the registry's generation, raised by every change of its set of keys in the changing
-- transaction. The raise takes this row's lock until that transaction commits, so generations commit
-- in their order, and two snapshots that see the same generation see the same set of keys. Keyed by a
-- constant column so that an account id can lead it.
CREATE TABLE klaviyo_rollup_dimension_generation (
    singleton   boolean  PRIMARY KEY DEFAULT true CHECK (singleton),
    generation  bigint   NOT NULL
);
INSERT INTO klaviyo_rollup_dimension_generation (singleton, generation) VALUES (true, 1);

CREATE FUNCTION klaviyo_raise_dimension_generation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE klaviyo_rollup_dimension_generation SET generation = generation + 1;
    RETURN NULL;
END
$$;

-- Per row (not per statement): registering keys that are already registered (ON CONFLICT DO NOTHING,
-- at every backfill) changes no row and keeps the generation, so the values carried stay usable.
CREATE TRIGGER klaviyo_rollup_dimensions_generation
    AFTER INSERT OR DELETE OR UPDATE OF dimension ON klaviyo_rollup_dimensions
    FOR EACH ROW EXECUTE FUNCTION klaviyo_raise_dimension_generation();
CREATE TRIGGER klaviyo_rollup_dimensions_generation_truncate
    AFTER TRUNCATE ON klaviyo_rollup_dimensions
    FOR EACH STATEMENT EXECUTE FUNCTION klaviyo_raise_dimension_generation();

-- The events' foreign keys to metrics and profiles go (docs/bookkeeping.md). Every writer of events
-- (lib/repositories/events.ts, through lib/app/ingest) stores the metric and the profile each event
-- names, or a stub of them, in the same transaction before the events, and nothing deletes metrics or
-- profiles, so the keys only re-checked what that transaction guarantees; the check, with its row lock
-- on the profile, made each copied event the bench's most expensive row. tests/aggregation/bookkeeping.test.ts
-- checks the guarantee on every ingest path.
ALTER TABLE klaviyo_events
    DROP CONSTRAINT klaviyo_events_metric_fkey,
    DROP CONSTRAINT klaviyo_events_profile_fkey;
