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
	-- The turn a message belongs to: the id of the user message it
	-- answers (NULL on user messages), and for an assistant message
	-- asking for tools, which round of that turn it is.
	reply_to	bigint,
	round		integer,
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
-- Exactly once: a turn stores each round of tool calls and its answer at
-- most once, so a retried or concurrent attempt of the same turn fails on
-- these instead of running a tool twice (lib/db.c maps that to 409).
CREATE UNIQUE INDEX IF NOT EXISTS messages_round_once_idx
	ON messages (reply_to, round) WHERE tool_calls IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS messages_answer_once_idx
	ON messages (reply_to) WHERE role = 'assistant' AND tool_calls IS NULL;

-- Idempotent turns: one row per Idempotency-Key of a user, naming the
-- request it was first used with (a SHA-256 of conversation_id and
-- message) and the user message that turn stored. A turn is done when
-- its answer is stored (messages_answer_once_idx); until then
-- lease_until says how long its attempt counts as running: a retry that
-- comes later takes the turn over and resumes after its last stored round.
CREATE TABLE IF NOT EXISTS turns (
	user_id		text NOT NULL,
	idempotency_key	text NOT NULL,
	request_hash	text NOT NULL,
	conversation_id	bigint NOT NULL
			REFERENCES conversations (id) ON DELETE CASCADE,
	user_message_id	bigint NOT NULL,
	lease_until	timestamptz NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (user_id, idempotency_key)
);
-- Deleting a conversation finds its turns by this.
CREATE INDEX IF NOT EXISTS turns_conversation_id_idx
	ON turns (conversation_id);
