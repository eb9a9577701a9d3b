-- Apps and their execution profiles. Runtime defaults are kept as JSON (the
-- `RuntimeDefaults` wire type): the control-plane reads them whole when it resolves a
-- run, and new default keys do not need a migration.

CREATE TABLE apps (
    app_id           text        PRIMARY KEY CHECK (app_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    name             text        NOT NULL,
    runtime_defaults jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE execution_profiles (
    app_id     text        NOT NULL REFERENCES apps (app_id) ON DELETE CASCADE,
    name       text        NOT NULL CHECK (name ~ '^[A-Za-z0-9_-]{1,64}$'),
    settings   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, name)
);

-- A run may name a profile without its app; it is then looked up by name alone.
CREATE INDEX execution_profiles_name_idx ON execution_profiles (name);
