-- Principals and their API tokens (only a hash of each token is stored). Full RBAC
-- comes later; for now the gateway's admin token from config is enough.

CREATE TABLE principals (
    id         uuid        PRIMARY KEY,
    name       text        NOT NULL,
    role       text        NOT NULL CHECK (role IN ('admin', 'operator', 'developer', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id           uuid        PRIMARY KEY,
    principal_id uuid        NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    token_hash   bytea       NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz NULL
);

CREATE INDEX api_tokens_principal_idx ON api_tokens (principal_id);
