-- Who resolved a human-loop request (`human`, `timeout`, `run_ended`), so clients can
-- tell a declined request from one nobody answered. NULL while pending, and for rows
-- resolved before this column existed.

ALTER TABLE human_loop_requests
    ADD COLUMN resolved_by text NULL
        CHECK (resolved_by IN ('human', 'timeout', 'run_ended'));
