-- Human-loop requests of runs, fed by the projector from `human_loop.requested` and
-- `human_loop.resolved`. Either event may be applied first after a redelivery, so a
-- resolution can create the row and the request fills in its fields later.

CREATE TABLE human_loop_requests (
    run_id       uuid        NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    request_id   text        NOT NULL,
    kind         text        NULL,
    prompt       text        NULL,
    details      jsonb       NULL,
    status       text        NOT NULL CHECK (status IN ('pending', 'resolved')),
    decision     text        NULL,
    requested_at timestamptz NULL,
    resolved_at  timestamptz NULL,
    PRIMARY KEY (run_id, request_id)
);

CREATE INDEX human_loop_requests_pending_idx ON human_loop_requests (run_id)
    WHERE status = 'pending';
