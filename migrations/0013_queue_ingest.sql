-- Queue ingest (docs/queue.md): messages the ingest consumer could not store.
--
-- The HTTP edge validates a request before it enqueues it, so a message that cannot be stored is
-- rare: a body changed by hand on the queue, a message from an older or newer version of the
-- service, or a row the database refuses (text PostgreSQL cannot hold, a value out of range). The
-- consumer reports such a message as failed, so SQS moves it to the dead-letter queue after
-- maxReceiveCount receives, and records it here each time: an operator sees what and why without
-- reading the queue, and can replay the body. Keyed by account first (the message's account, as
-- migration 0010 keys every table), then SQS's message id (stable across receives, so a redelivery
-- updates its row instead of adding one). No foreign key to klaviyo_accounts: a message too broken to
-- name its account is recorded under 'unknown'. The body is text, not jsonb: what made it unstorable
-- (a NUL) would refuse jsonb too.
CREATE TABLE klaviyo_queue_rejects (
    account_id        text         NOT NULL,
    message_id        text         NOT NULL,
    -- What the message asked for: events-page, create-event, bulk-create, profiles or metrics.
    kind              text         NOT NULL,
    -- JSON:API error code (a validation problem) or the SQLSTATE the database answered.
    code              text         NOT NULL,
    reason            text         NOT NULL,
    body              text         NOT NULL,
    receive_count     integer      NOT NULL DEFAULT 1,
    first_seen_at     timestamptz  NOT NULL DEFAULT now(),
    last_seen_at      timestamptz  NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, message_id)
);

CREATE INDEX klaviyo_queue_rejects_recent ON klaviyo_queue_rejects (account_id, last_seen_at DESC);
