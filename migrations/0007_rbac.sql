-- RBAC: which apps a principal belongs to, and who started each run.
--
-- Developers and viewers see only the runs and apps of apps they are members of; a
-- run without an app is visible to admins, operators and the principal that started
-- it. `app_id` has no foreign key, like `runs.app_id`: a membership may be granted
-- before the app is registered, and it outlives a re-registration.

CREATE TABLE principal_apps (
    principal_id uuid NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    app_id       text NOT NULL CHECK (app_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    PRIMARY KEY (principal_id, app_id)
);

-- The principal id the gateway authenticated (a uuid from `principals`, or the
-- built-in `admin` / `anonymous`); NULL for runs from before this migration.
ALTER TABLE runs ADD COLUMN created_by text NULL;
