-- What a batch's profile-hour sync found each touched hour must add to its rollup (the profiles new to
-- the hour, the change of its lookback counts), read and emptied by the batch's next statement in the
-- same transaction (lib/repositories/profileHours.ts, lib/repositories/aggregates.ts). A table, not a
-- result sent to the client and back: a batch of 5,000 hours touches up to twice as many, and their
-- rows would pass the Data API's 1 MiB response limit. Only the holder of the aggregation lock writes
-- it, and never commits a row.
CREATE TABLE klaviyo_aggregate_adjustments (
    metric_id     varchar(64)  NOT NULL,
    bucket        timestamptz  NOT NULL,
    new_profiles  bigint       NOT NULL,
    lookbacks     integer[]    NOT NULL,
    PRIMARY KEY (metric_id, bucket)
);
