-- Idempotent starts: the `Idempotency-Key` a client sent with `POST /api/runs/start`,
-- kept with the run it started, and a SHA-256 of the request, so that a retry of the
-- same request gets the same answer and a different request under the same key is
-- refused. A key belongs to the principal that sent it (`created_by`) and is honoured
-- for 24 hours; a key reused after that is released from its old run first.

ALTER TABLE runs
    ADD COLUMN idempotency_key         text  NULL,
    ADD COLUMN idempotency_fingerprint bytea NULL;

CREATE UNIQUE INDEX runs_idempotency_key_idx ON runs (created_by, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
