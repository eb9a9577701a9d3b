-- Runs: what was asked for (resolved provider, model, options) and the status the
-- projector derives from the run's events. `last_event_seq` is the `seq` of the last
-- event applied; an event only moves the status when its `seq` is higher, so
-- redelivered or reordered events never move a run backwards.
--
-- `app_id` has no foreign key on purpose: a run's record outlives changes to the app.

CREATE TABLE runs (
    run_id                 uuid        PRIMARY KEY,
    app_id                 text        NULL,
    execution_profile      text        NULL,
    provider               text        NOT NULL,
    model                  text        NULL,
    prompt                 text        NOT NULL,
    provider_options       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    credential_env         text[]      NOT NULL DEFAULT '{}',
    timeout_ms             bigint      NULL CHECK (timeout_ms IS NULL OR timeout_ms > 0),
    status                 text        NOT NULL CHECK (status IN (
                               'queued', 'claimed', 'dispatched', 'running',
                               'waiting_for_human', 'succeeded', 'failed', 'stopped',
                               'timed_out')),
    status_detail          text        NULL,
    failure_reason         text        NULL,
    failure_detail         text        NULL,
    evidence               jsonb       NULL,
    executor_id            text        NULL,
    worker_id              text        NULL,
    -- Stream sequence (RUN_EVENTS) of the run's first event: where a full replay starts.
    first_event_stream_seq bigint      NULL,
    last_event_seq         bigint      NOT NULL DEFAULT 0,
    created_at             timestamptz NOT NULL DEFAULT now(),
    claimed_at             timestamptz NULL,
    started_at             timestamptz NULL,
    completed_at           timestamptz NULL,
    updated_at             timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX runs_status_created_idx ON runs (status, created_at);
CREATE INDEX runs_app_created_idx ON runs (app_id, created_at);
-- Listing newest first with a keyset cursor.
CREATE INDEX runs_created_idx ON runs (created_at, run_id);
