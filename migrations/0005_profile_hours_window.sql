-- A profile-hour's link to the profile's previous hour matters only within 24 hours: a previous hour
-- 25 or more hours back gives the same lookback span (25) as none at all (klaviyo_lookback_span). So
-- previous_bucket now holds the previous hour only when it lies within the 24 hours before, and NULL
-- otherwise. The aggregator then finds every link a change can make or break in one bounded range
-- scan per (metric, profile), the rows within 24 hours of the change, instead of three index probes
-- (the row before, the rows between, the row after) whose backward probe cost the most. With the
-- other changes of the same day, the incremental run at 10M events went from 4.3-4.8 s to 1.4-2.6 s
-- (bench/aggregate.ts; README, Aggregate bench).
-- Spans and lookback counts are unchanged by this: only links of 25 hours or more are cleared.
UPDATE klaviyo_profile_hours
SET previous_bucket = NULL
WHERE previous_bucket < bucket - interval '24 hours';
