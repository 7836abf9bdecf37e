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

-- The statements of a turn, as functions: lib/db.c sends one call per
-- statement. PostgreSQL keeps the plans of a PL/pgSQL function for the
-- life of the server connection, so each is parsed and planned once per
-- connection instead of on every call: what a named prepared statement
-- would give, but pgbouncer 1.18 in transaction mode, which DESIGN.md
-- says we must work behind, cannot carry those. Parsing and planning were
-- a third of the database's time in a turn (bench/perf.pl).
--
-- Every function runs with settings of its own, restored when it
-- returns:
--   enable_seqscan, enable_bitmapscan off: every statement here is an
--     index lookup of a few rows, and must stay one however the tables
--     grow. A kept plan was chosen when its connection first ran it:
--     against a table of a few pages a sequential scan looks cheapest,
--     and it stays the plan while the table grows (we measured it turn
--     conversations' lookups into scans of the whole table). The window
--     is the newest N messages of one conversation, read backwards from
--     messages_conversation_id_idx; when the statistics say
--     conversations are short, the planner prefers a bitmap scan of the
--     whole conversation and a sort, whose cost grows with the
--     conversation: what ADR-003 asks us to avoid.
--   lock_timeout 5 s: a turn waiting for a row lock held too long fails
--     (503) instead of holding its worker. A bound on whole statements
--     (statement_timeout) cannot be set from inside a statement; set it
--     on the service's role if you want one (README).
--
-- Run again, schema.sql replaces them: deploy it before new workers.

-- The first statement of a turn. With an Idempotency-Key (p_key) already
-- used by the user, one 'prior' row describes that turn and nothing is
-- written. Otherwise: the conversation created (p_conversation NULL) or
-- locked (the user's; no row at all when it is not), the user message
-- stored, the key recorded, and 'new' rows returned: the conversation,
-- the message's id and the window of at most p_history messages before
-- it, newest first (one row of NULLs when there is none). The
-- conversation's row lock orders every write to it, so the messages of
-- concurrent turns never interleave inside a round. A concurrent first
-- attempt with the same key fails on the turns primary key, which rolls
-- the whole turn back (lib/db.c: 409).
CREATE OR REPLACE FUNCTION chat_turn_begin(p_user text,
	p_conversation bigint, p_title text, p_message text,
	p_history integer, p_key text, p_hash text)
RETURNS TABLE (kind text, conversation_id bigint, message_id bigint,
	id bigint, role text, content text, tool_calls text,
	tool_call_id text, request_hash text, running boolean, done boolean)
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET lock_timeout = '5s'
AS $$
#variable_conflict use_column
DECLARE
	conv	bigint;
	msg	bigint;
BEGIN
	IF p_key IS NOT NULL THEN
		RETURN QUERY SELECT 'prior', t.conversation_id,
		    t.user_message_id, NULL::bigint, NULL, NULL, NULL, NULL,
		    t.request_hash, t.lease_until > now(), EXISTS (
		     SELECT 1 FROM messages a
		     WHERE a.reply_to = t.user_message_id
		     AND a.role = 'assistant' AND a.tool_calls IS NULL)
		    FROM turns t
		    WHERE t.user_id = p_user AND t.idempotency_key = p_key;
		IF FOUND THEN
			RETURN;
		END IF;
	END IF;
	IF p_conversation IS NULL THEN
		INSERT INTO conversations (user_id, title)
		    VALUES (p_user, p_title) RETURNING conversations.id INTO conv;
	ELSE
		SELECT c.id INTO conv FROM conversations c
		    WHERE c.id = p_conversation AND c.user_id = p_user
		    FOR NO KEY UPDATE;
		IF NOT FOUND THEN
			RETURN;
		END IF;
	END IF;
	INSERT INTO messages (conversation_id, user_id, role, content)
	    VALUES (conv, p_user, 'user', p_message)
	    RETURNING messages.id INTO msg;
	IF p_key IS NOT NULL THEN
		-- A key guards retries, which come within minutes: a user's
		-- new keyed turn clears their keys older than a day.
		DELETE FROM turns t WHERE t.user_id = p_user
		    AND t.idempotency_key <> p_key
		    AND t.created_at < now() - interval '24 hours';
		-- DESIGN.md: an attempt whose worker died counts as running
		-- for at most 30 s; each stored round renews it.
		INSERT INTO turns (user_id, idempotency_key, request_hash,
		    conversation_id, user_message_id, lease_until)
		    VALUES (p_user, p_key, p_hash, conv, msg,
		    now() + interval '30 seconds');
	END IF;
	RETURN QUERY SELECT 'new', conv, msg, h.id, h.role, h.content,
	    h.tool_calls, h.tool_call_id, NULL::text, NULL::boolean,
	    NULL::boolean
	    FROM (SELECT) one LEFT JOIN LATERAL (
	     SELECT m.id, m.role, m.content, m.tool_calls::text AS tool_calls,
	     m.tool_call_id FROM messages m
	     WHERE m.conversation_id = conv AND m.user_id = p_user
	     AND m.id < msg ORDER BY m.id DESC LIMIT p_history
	    ) h ON true
	    ORDER BY h.id DESC;
END
$$;

-- A round of tool calls begins: the conversation's row lock (taken as an
-- UPDATE would take it, without writing a new row version: only the
-- turn's last statement bumps updated_at), the assistant message asking
-- for the calls as round p_round of the turn answering p_reply_to, and
-- the lease of the turn's key renewed. A conversation deleted meanwhile
-- is a foreign key violation (lib/db.c: 404); a round stored twice fails
-- on messages_round_once_idx (409). The calls follow, in the same
-- transaction: chat_tool().
CREATE OR REPLACE FUNCTION chat_round(p_user text, p_conversation bigint,
	p_reply_to bigint, p_round integer, p_content text,
	p_tool_calls jsonb, p_key text)
RETURNS void
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET lock_timeout = '5s'
AS $$
BEGIN
	PERFORM FROM conversations c
	    WHERE c.id = p_conversation AND c.user_id = p_user
	    FOR NO KEY UPDATE;
	IF NOT FOUND THEN
		RAISE foreign_key_violation
		    USING MESSAGE = 'conversation is gone';
	END IF;
	INSERT INTO messages (conversation_id, user_id, role, content,
	    tool_calls, reply_to, round)
	    VALUES (p_conversation, p_user, 'assistant', p_content,
	    p_tool_calls, p_reply_to, p_round);
	IF p_key IS NOT NULL THEN
		UPDATE turns SET lease_until = now() + interval '30 seconds'
		    WHERE user_id = p_user AND idempotency_key = p_key;
	END IF;
END
$$;

-- One tool call of a round: the task change (p_op: add, list, complete,
-- delete, update, or none for a result known without SQL) and its tool
-- message commit together. The result is built from the rows touched, or
-- is p_fallback when no task matched; the stored result is returned. At
-- most 100 tasks are listed: the list must fit the model's context.
CREATE OR REPLACE FUNCTION chat_tool(p_user text, p_conversation bigint,
	p_reply_to bigint, p_call_id text, p_fallback text, p_op text,
	p_task bigint, p_title text, p_description text, p_status text)
RETURNS text
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET lock_timeout = '5s'
AS $$
DECLARE
	result	text;
BEGIN
	CASE p_op
	WHEN 'add' THEN
		INSERT INTO tasks (user_id, title, description)
		    VALUES (p_user, p_title, COALESCE(p_description, ''))
		    RETURNING json_build_object('task_id', id,
		    'status', 'created', 'title', title)::text INTO result;
	WHEN 'list' THEN
		SELECT COALESCE(json_agg(json_build_object('id', t.id,
		    'title', t.title, 'description', t.description,
		    'completed', t.completed) ORDER BY t.id), '[]')::text
		    INTO result FROM (
		     SELECT id, title, description, completed FROM tasks
		     WHERE user_id = p_user AND (p_status = 'all'
		     OR completed = (p_status = 'completed'))
		     ORDER BY id LIMIT 100) t;
	WHEN 'complete' THEN
		UPDATE tasks SET completed = true, updated_at = now()
		    WHERE id = p_task AND user_id = p_user
		    RETURNING json_build_object('task_id', id,
		    'status', 'completed', 'title', title)::text INTO result;
	WHEN 'delete' THEN
		DELETE FROM tasks WHERE id = p_task AND user_id = p_user
		    RETURNING json_build_object('task_id', id,
		    'status', 'deleted', 'title', title)::text INTO result;
	WHEN 'update' THEN
		UPDATE tasks SET title = COALESCE(p_title, title),
		    description = COALESCE(p_description, description),
		    updated_at = now()
		    WHERE id = p_task AND user_id = p_user
		    RETURNING json_build_object('task_id', id,
		    'status', 'updated', 'title', title)::text INTO result;
	WHEN 'none' THEN
		NULL;
	END CASE;
	result := COALESCE(result, p_fallback);
	INSERT INTO messages (conversation_id, user_id, role, content,
	    tool_call_id, reply_to)
	    VALUES (p_conversation, p_user, 'tool', result, p_call_id,
	    p_reply_to);
	RETURN result;
END
$$;

-- The last statement of a turn: the answer stored and the conversation's
-- updated_at bumped. Returns the answer's id; NULL when the conversation
-- is gone. A second answer to the same turn fails on
-- messages_answer_once_idx (409).
CREATE OR REPLACE FUNCTION chat_turn_finish(p_user text,
	p_conversation bigint, p_answer text, p_reply_to bigint)
RETURNS bigint
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET lock_timeout = '5s'
AS $$
DECLARE
	answer	bigint;
BEGIN
	UPDATE conversations SET updated_at = now()
	    WHERE id = p_conversation AND user_id = p_user;
	IF NOT FOUND THEN
		RETURN NULL;
	END IF;
	INSERT INTO messages (conversation_id, user_id, role, content,
	    reply_to)
	    VALUES (p_conversation, p_user, 'assistant', p_answer, p_reply_to)
	    RETURNING id INTO answer;
	RETURN answer;
END
$$;
