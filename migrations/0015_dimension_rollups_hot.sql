-- Cheaper dimension rollup writes (docs/breakdowns.md, "What a write costs").
--
-- The aggregator adds each batch to the dimension rollups by upserts: a late event updates its
-- hour's row and its day's row, and a day's row is updated by every batch that touches the day. The
-- figures were INCLUDE columns of the primary key, so every update wrote a new index entry as well as
-- a new row version. Out of the key, an update that finds room on its page is a heap-only tuple
-- (HOT): no index entry at all. The fill factor keeps that room on the pages new rows fill; the pages
-- written before this migration stay full until vacuum frees their old versions. Readers now fetch the
-- figures from the table: a breakdown reads a few thousand rows, which stay in the buffer cache.

-- TimescaleDB: a compressed chunk cannot change its keys. Decompress, switch compression off until the
-- keys are rebuilt, and switch it back on below; the policies compress the old chunks again.
DO $timescale$
DECLARE
    t text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        FOREACH t IN ARRAY ARRAY['klaviyo_dimension_rollups', 'klaviyo_dimension_daily_rollups'] LOOP
            PERFORM remove_compression_policy(t::regclass, if_exists => true);
            PERFORM decompress_chunk(c, true) FROM show_chunks(t::regclass) AS c;
            EXECUTE format('ALTER TABLE %I SET (timescaledb.compress = false)', t);
        END LOOP;
    END IF;
END
$timescale$;

ALTER TABLE klaviyo_dimension_rollups DROP CONSTRAINT klaviyo_dimension_rollups_pkey,
    ADD PRIMARY KEY (account_id, metric_id, dimension, bucket, dimension_value);
ALTER TABLE klaviyo_dimension_rollups SET (fillfactor = 80);

ALTER TABLE klaviyo_dimension_daily_rollups DROP CONSTRAINT klaviyo_dimension_daily_rollups_pkey,
    ADD PRIMARY KEY (account_id, metric_id, dimension, day, dimension_value);
ALTER TABLE klaviyo_dimension_daily_rollups SET (fillfactor = 70);

DO $timescale$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
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
