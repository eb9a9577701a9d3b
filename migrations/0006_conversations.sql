-- Conversations: every run belongs to one. A run that starts a conversation has its own
-- run id as `conversation_id`; a follow-up (`conversationId` / `parentRunId` on
-- `POST /api/runs/start`) has the conversation's. There is no conversations table: a
-- conversation exists as long as one of its runs does, and what a follow-up inherits
-- (provider, model, app, profile, the executor holding its workspace) is read from the
-- conversation's latest runs through the index below.
--
-- Runs from before this migration each start a conversation of their own.

ALTER TABLE runs ADD COLUMN conversation_id uuid NULL;
UPDATE runs SET conversation_id = run_id WHERE conversation_id IS NULL;
ALTER TABLE runs ALTER COLUMN conversation_id SET NOT NULL;

-- A conversation's runs in order; its latest run first when read backwards.
CREATE INDEX runs_conversation_created_idx ON runs (conversation_id, created_at);
