-- Pulling from Klaviyo (lib/sync): where each stream stands, who is running, and what was set aside.
-- Every table is keyed by account_id first, so that one database can later keep several accounts.

-- One row per (account, stream): metrics (full refresh), profiles (incremental on `updated`) and
-- events (incremental on `datetime`, plus a newest-first backfill). A run writes its checkpoint in
-- the same transaction as the page it stored, so a stop loses at most the page in flight.
CREATE TABLE klaviyo_sync_streams (
    account_id              text         NOT NULL,
    stream                  text         NOT NULL CHECK (stream IN ('metrics', 'profiles', 'events')),
    -- events: every event with datetime before it has been read (late ones aside: the lookback
    -- sweeps re-read those); it never passes the window end, itself never past now minus the safety
    -- lag. profiles: the newest `updated` stored.
    cursor                  timestamptz,
    -- events: the incremental window being read, [window_start, window_end), and the datetime of the
    -- last stored page in it (a resumed window re-reads from there with greater-or-equal).
    window_start            timestamptz,
    window_end              timestamptz,
    window_position         timestamptz,
    window_is_sweep         boolean      NOT NULL DEFAULT false,
    last_sweep_at           timestamptz,
    -- events: the first backfill, newest first in slices; [backfill_horizon, backfill_next_end) is
    -- still to read, and backfill_position is how far the current slice has been read.
    backfill_horizon        timestamptz,
    backfill_next_end       timestamptz,
    backfill_position       timestamptz,
    backfill_done_at        timestamptz,
    rows_pulled             bigint       NOT NULL DEFAULT 0,
    last_run_rows_pulled    bigint       NOT NULL DEFAULT 0,
    last_run_at             timestamptz,
    last_success_at         timestamptz,
    last_error_at           timestamptz,
    last_error              text,
    updated_at              timestamptz  NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, stream)
);

-- One run at a time per account: a run takes the lease, renews it with every checkpoint, and gives it
-- back at its end. A run that died keeps it until expires_at, which is past the function's timeout.
CREATE TABLE klaviyo_sync_leases (
    account_id   text         PRIMARY KEY,
    owner        text         NOT NULL,
    expires_at   timestamptz  NOT NULL
);

-- Items from Klaviyo that ingest could not store (a NUL in a property, a time before 2000, ...): kept
-- as received, with the validation's reason and pointer, while the rest of their page is stored.
-- The JSON is text, not jsonb: what made the item unstorable (a NUL) would refuse jsonb too;
-- JSON.stringify escapes it, and text keeps the escape. Re-reading the same item (a lookback) updates
-- its row instead of adding one.
CREATE TABLE klaviyo_sync_rejects (
    account_id        text         NOT NULL,
    stream            text         NOT NULL,
    -- type:id of the item, or a hash of its JSON when it has no usable id.
    item_key          text         NOT NULL,
    pointer           text         NOT NULL,
    code              text         NOT NULL,
    reason            text         NOT NULL,
    item_json         text         NOT NULL,
    source_url        text,
    first_seen_at     timestamptz  NOT NULL DEFAULT now(),
    last_seen_at      timestamptz  NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, stream, item_key)
);
