-- Columns that hold one of a closed set of names get a type of their own instead of
-- `text` with a CHECK: the control-plane's compile-time checked queries then map each
-- one to a Rust enum, so a status the code does not know cannot be written or read.
--
-- Each type lists exactly the names the CHECK it replaces allowed (for `decision`,
-- the only two the projector writes). A new name needs `ALTER TYPE … ADD VALUE`.

CREATE TYPE run_status AS ENUM (
    'queued', 'claimed', 'dispatched', 'running', 'waiting_for_human',
    'succeeded', 'failed', 'stopped', 'timed_out'
);

ALTER TABLE runs
    DROP CONSTRAINT runs_status_check,
    ALTER COLUMN status TYPE run_status USING status::run_status;

CREATE TYPE principal_role AS ENUM ('admin', 'operator', 'developer', 'viewer');

ALTER TABLE principals
    DROP CONSTRAINT principals_role_check,
    ALTER COLUMN role TYPE principal_role USING role::principal_role;

CREATE TYPE human_loop_status AS ENUM ('pending', 'resolved');
CREATE TYPE human_loop_decision AS ENUM ('approve', 'deny');
CREATE TYPE human_loop_resolver AS ENUM ('human', 'timeout', 'run_ended');

-- The partial index's predicate compares with a `text` literal: rebuilt for the new type.
DROP INDEX human_loop_requests_pending_idx;

ALTER TABLE human_loop_requests
    DROP CONSTRAINT human_loop_requests_status_check,
    DROP CONSTRAINT human_loop_requests_resolved_by_check,
    ALTER COLUMN status TYPE human_loop_status USING status::human_loop_status,
    ALTER COLUMN decision TYPE human_loop_decision USING decision::human_loop_decision,
    ALTER COLUMN resolved_by TYPE human_loop_resolver USING resolved_by::human_loop_resolver;

CREATE INDEX human_loop_requests_pending_idx ON human_loop_requests (run_id)
    WHERE status = 'pending';
