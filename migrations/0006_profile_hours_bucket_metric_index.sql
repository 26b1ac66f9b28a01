-- The profile-hours of one (metric, hour) are read when the aggregator compares an hour without
-- pending rows with its raw events (after deletions, a COPY, migration 0002's catch-up). Through the
-- (bucket) index that read went through the hour's rows of every metric, ~20 times too many: 154,628
-- such hours took 1,196 s at 10M events. (bucket, metric_id) reads only the metric's rows, and
-- still serves the rebuild's time ranges. Not (metric_id, bucket): led by the metric, the planner
-- would take it for the primary-key lookups of one profile's hours.
CREATE INDEX klaviyo_profile_hours_bucket_metric_idx ON klaviyo_profile_hours (bucket, metric_id);
DROP INDEX klaviyo_profile_hours_bucket_idx;
