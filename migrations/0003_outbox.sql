-- Transactional outbox: a row is written in the same transaction as its run and deleted
-- once both `run.queued` and the run command are acknowledged by JetStream. A row that
-- outlives a crash between commit and publish is republished by the sweeper; the
-- stream's duplicate window (Nats-Msg-Id = run id) and the fenced event append make a
-- second publication harmless.

CREATE TABLE outbox (
    id           bigserial   PRIMARY KEY,
    run_id       uuid        NOT NULL,
    -- Data of the run's first event (`run.queued`).
    queued_event jsonb       NOT NULL,
    -- The `RunCommand` for `runs.commands.<provider>`.
    command      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX outbox_created_idx ON outbox (created_at);
