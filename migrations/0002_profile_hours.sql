-- Exact distinct profiles per local day from hourly rollups, in any whole-hour time zone.
--
-- Distinct counts do not add up across hours, so "unique openers per day" used to read every event of
-- the range (1.2M index entries for 30 days of a busy metric at 10M events: ~0.5 s). A day bucket of a
-- whole-hour zone is a run of at most 25 whole UTC hours starting at some hour a. A profile counts
-- once in [a, b): in the first hour h of the run where it has an event, i.e. in the hour h whose
-- previous hour with an event of the metric lies before a. So if every hourly rollup stores, for
-- k = 0..24, how many of its profiles had no event of the metric in the k hours before it, the day's
-- distinct count is the sum over its hours h of that number at k = (h - a) in hours: 24 array reads
-- instead of a day's events.

-- Which profiles had an event of a metric in a UTC hour, and the previous such hour of the same
-- profile and metric (NULL: none). Written only by the aggregator, under its lock, from the events it
-- counts, so it covers exactly the events the rollups have counted.
CREATE TABLE klaviyo_profile_hours (
    metric_id        varchar(64)  NOT NULL,
    profile_id       varchar(64)  NOT NULL,
    bucket           timestamptz  NOT NULL,
    previous_bucket  timestamptz,
    PRIMARY KEY (metric_id, profile_id, bucket)
);
-- The rebuild replaces a time range's rows. Not (metric_id, bucket): the planner would then probe
-- for one profile-hour through all of its hour's rows instead of the primary key.
CREATE INDEX klaviyo_profile_hours_bucket_idx ON klaviyo_profile_hours (bucket);

-- How many of the lookback counts (k = 0..24) a profile-hour adds 1 to: the k with
-- previous_bucket < bucket - k hours. 25 when there is no previous hour (or it is 25 or more hours
-- back), 0 for a previous hour that is not before this one.
CREATE FUNCTION klaviyo_lookback_span(bucket timestamptz, previous_bucket timestamptz) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN previous_bucket IS NULL THEN 25
        WHEN previous_bucket >= bucket THEN 0
        ELSE least(25, floor(extract(epoch FROM bucket - previous_bucket) / 3600)::integer)
    END
$$;

-- Element k + 1 (k = 0..24): profiles of this hour with no event of the metric in the k hours before
-- it. Element 1 equals unique_profiles. Meaningful for granularity 'hour'. A constant default, as
-- TimescaleDB requires on a hypertable with compression.
ALTER TABLE klaviyo_aggregated_metrics
    ADD COLUMN new_profiles_by_lookback integer[] NOT NULL DEFAULT '{0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0}';

-- Existing rollups have no profile-hours yet: hand every stored hour back to the aggregator as a
-- marked hour without pending rows, which it recomputes from raw events, profile-hours included.
-- Readers recompute marked hours from raw events meanwhile, so answers stay exact during the catch-up.
DELETE FROM klaviyo_aggregate_pending;
INSERT INTO klaviyo_aggregate_dirty (metric_id, bucket)
SELECT DISTINCT metric_id, bucket FROM klaviyo_aggregated_metrics WHERE granularity = 'hour'
ON CONFLICT (metric_id, bucket) DO NOTHING;
