-- schema.sql: todo-chat's tables. Safe to run again on an existing
-- database: every statement is IF NOT EXISTS or otherwise idempotent.
--
-- user_id is the JWT "sub" claim as text: 1..128 bytes of
-- [A-Za-z0-9._@+-] (lib/auth.h); every query on user data matches it.

CREATE TABLE IF NOT EXISTS tasks (
	id		bigserial PRIMARY KEY,
	user_id		text NOT NULL,
	title		text NOT NULL,
	description	text NOT NULL DEFAULT '',
	completed	boolean NOT NULL DEFAULT false,
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now()
);
-- list_tasks: a user's tasks in id order, optionally by status.
CREATE INDEX IF NOT EXISTS tasks_user_id_idx ON tasks (user_id, id);

CREATE TABLE IF NOT EXISTS conversations (
	id		bigserial PRIMARY KEY,
	user_id		text NOT NULL,
	title		text NOT NULL DEFAULT '',
	created_at	timestamptz NOT NULL DEFAULT now(),
	updated_at	timestamptz NOT NULL DEFAULT now()
);
-- A user's conversations by recency (GET /chat/conversations).
CREATE INDEX IF NOT EXISTS conversations_user_recent_idx
	ON conversations (user_id, updated_at DESC, id DESC);

CREATE TABLE IF NOT EXISTS messages (
	id		bigserial PRIMARY KEY,
	conversation_id	bigint NOT NULL
			REFERENCES conversations (id) ON DELETE CASCADE,
	user_id		text NOT NULL,
	role		text NOT NULL
			CHECK (role IN ('user', 'assistant', 'tool')),
	content		text,
	tool_calls	jsonb,
	tool_call_id	text,
	created_at	timestamptz NOT NULL DEFAULT now(),
	-- The shapes OpenAI accepts: a tool result names its call, only an
	-- assistant asks for calls, and every message says something.
	CONSTRAINT messages_tool_has_call_id
		CHECK ((role = 'tool') = (tool_call_id IS NOT NULL)),
	CONSTRAINT messages_only_assistant_calls
		CHECK (tool_calls IS NULL OR role = 'assistant'),
	CONSTRAINT messages_not_empty
		CHECK (content IS NOT NULL OR tool_calls IS NOT NULL)
);
-- The history window: a conversation's newest messages, read backwards
-- from the index so the cost does not grow with the conversation.
CREATE INDEX IF NOT EXISTS messages_conversation_id_idx
	ON messages (conversation_id, id DESC);
