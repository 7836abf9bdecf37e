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
-- GET /chat/tasks?status=pending|completed: one status's tasks, newest
-- first, without reading past the other status's.
CREATE INDEX IF NOT EXISTS tasks_user_status_idx
	ON tasks (user_id, completed, id);

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

-- A streamed turn as others may watch it, so that a reloaded page
-- (GET /chat/conversations/{id}/stream) can follow it from any worker:
-- its head here (whether it is done, whether someone follows it or
-- asked it to stop (POST .../stop), which its worker reads at least
-- every half second, and how long its worker holds it), and, once it is
-- followed, the events it has sent (the stream's own bytes, pings
-- aside) in turn_stream_batches, written in batches a few times a
-- second at most, never a token at a time. A stream whose worker died
-- is not followed past lease_until. Rows of finished streams are
-- cleared by the user's next stream after a minute: a watcher reads the
-- end of a stream within a second of it.
CREATE TABLE IF NOT EXISTS turn_streams (
	user_message_id	bigint PRIMARY KEY,
	conversation_id	bigint NOT NULL
			REFERENCES conversations (id) ON DELETE CASCADE,
	user_id		text NOT NULL,
	batches		integer NOT NULL DEFAULT 0,
	followed	boolean NOT NULL DEFAULT false,
	done		boolean NOT NULL DEFAULT false,
	stop		boolean NOT NULL DEFAULT false,
	lease_until	timestamptz NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now()
);
-- The events were one text the worker appended to: every write rewrote
-- the whole stream so far (and its WAL), a cost that grew with the turn.
ALTER TABLE turn_streams ADD COLUMN IF NOT EXISTS batches integer NOT NULL
	DEFAULT 0;
ALTER TABLE turn_streams DROP COLUMN IF EXISTS events;
ALTER TABLE turn_streams ADD COLUMN IF NOT EXISTS followed boolean NOT NULL
	DEFAULT false;
-- A stream's events, one row a write, numbered from 1: a write adds only
-- what is new, and a watcher reads only the batches it has not seen.
CREATE TABLE IF NOT EXISTS turn_stream_batches (
	user_message_id	bigint NOT NULL
			REFERENCES turn_streams ON DELETE CASCADE,
	batch		integer NOT NULL,
	events		text NOT NULL,
	PRIMARY KEY (user_message_id, batch)
);
-- A conversation's newest stream; a user's streams, for the clearing.
CREATE INDEX IF NOT EXISTS turn_streams_conversation_idx
	ON turn_streams (conversation_id, user_message_id DESC);
CREATE INDEX IF NOT EXISTS turn_streams_user_idx
	ON turn_streams (user_id, created_at);

-- The statements of a turn, as functions: lib/db.c sends one call per
-- statement. PostgreSQL keeps the plans of a PL/pgSQL function for the
-- life of the server connection, so each is parsed and planned once per
-- connection instead of on every call: what a named prepared statement
-- would give, but pgbouncer 1.18 in transaction mode, which the service
-- must work behind (README, "Deployment"), cannot carry those. Parsing and planning were
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
--     conversation: the cost of a turn must not grow with the
--     length of the conversation.
--   lock_timeout 5 s: a turn waiting for a row lock held too long fails
--     (503) instead of holding its worker. A bound on whole statements
--     (statement_timeout) cannot be set from inside a statement; set it
--     on the service's role if you want one (README).
--
-- Run again, schema.sql replaces them: deploy it before new workers.

-- How long an attempt of a keyed turn counts as running after its last
-- sign of life: a retry that comes while it runs gets 409
-- turn_in_progress, one that comes later takes the turn over. 30 s is far
-- above a turn's time in the database, and short enough that a person's
-- retry after a crashed worker soon succeeds. Each stored round renews it.
CREATE OR REPLACE FUNCTION chat_turn_lease() RETURNS interval
LANGUAGE sql IMMUTABLE
AS $$ SELECT interval '30 seconds' $$;

-- The history window: the user's newest messages of a conversation
-- before message p_before, at most p_limit, newest first, read backwards
-- from messages_conversation_id_idx so that the cost does not grow with
-- the conversation. A plain SQL function, so that PostgreSQL inlines it
-- into the statement that calls it and plans them together.
CREATE OR REPLACE FUNCTION chat_history(p_user text, p_conversation bigint,
	p_before bigint, p_limit integer)
RETURNS TABLE (id bigint, role text, content text, tool_calls text,
	tool_call_id text)
LANGUAGE sql STABLE
AS $$
	SELECT m.id, m.role, m.content, m.tool_calls::text, m.tool_call_id
	FROM messages m
	WHERE m.conversation_id = p_conversation AND m.user_id = p_user
	AND m.id < p_before
	ORDER BY m.id DESC LIMIT p_limit
$$;

-- What the statements that start or take up a turn return, one shape
-- for all (lib/db.c reads the columns by name). The first row describes
-- the turn: kind 'new' (chat_turn_begin stored the message), 'prior'
-- (the key was used before: request_hash, running and done tell how that
-- turn stands; nothing was written) or 'turn' (a stored turn read back).
-- Then, for a stored turn, its own messages ('own': those answering its
-- user message) oldest first; then the window before the user message
-- ('hist') newest first. message_id is the user message on the first row,
-- each message's id on the others.
DO $$
BEGIN
	CREATE TYPE chat_turn_row AS (kind text, conversation_id bigint,
	    message_id bigint, role text, content text, tool_calls text,
	    tool_call_id text, request_hash text, running boolean,
	    done boolean);
EXCEPTION WHEN duplicate_object THEN
	NULL;
END
$$;

-- Earlier versions of schema.sql returned other shapes, or took other
-- arguments; CREATE OR REPLACE cannot change either.
DO $$
BEGIN
	IF EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'chat_turn_begin'
	    AND prorettype <> 'chat_turn_row'::regtype) THEN
		DROP FUNCTION chat_turn_begin(text, bigint, text, text,
		    integer, text, text);
	END IF;
END
$$;
DROP FUNCTION IF EXISTS chat_tool(text, bigint, bigint, text, text, text,
	bigint, text, text, text);

-- The first statement of a turn. With an Idempotency-Key (p_key) already
-- used by the user, one 'prior' row describes that turn and nothing is
-- written. Otherwise: the conversation created (p_conversation NULL) or
-- locked (the user's; no row at all when it is not), the user message
-- stored, the key recorded, and a 'new' row returned with the window of
-- at most p_history messages before it. The conversation's row lock
-- orders every write to it, so the messages of concurrent turns never
-- interleave inside a round. A concurrent first attempt with the same key
-- fails on the turns primary key, which rolls the whole turn back
-- (lib/db.c: 409).
CREATE OR REPLACE FUNCTION chat_turn_begin(p_user text,
	p_conversation bigint, p_title text, p_message text,
	p_history integer, p_key text, p_hash text)
RETURNS SETOF chat_turn_row
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET lock_timeout = '5s'
AS $$
DECLARE
	conv	bigint;
	msg	bigint;
BEGIN
	IF p_key IS NOT NULL THEN
		RETURN QUERY SELECT 'prior'::text, t.conversation_id,
		    t.user_message_id, NULL::text, NULL::text, NULL::text,
		    NULL::text, t.request_hash, t.lease_until > now(), EXISTS (
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
		INSERT INTO turns (user_id, idempotency_key, request_hash,
		    conversation_id, user_message_id, lease_until)
		    VALUES (p_user, p_key, p_hash, conv, msg,
		    now() + chat_turn_lease());
	END IF;
	RETURN QUERY SELECT 'new'::text, conv, msg, NULL::text, NULL::text,
	    NULL::text, NULL::text, NULL::text, NULL::boolean, NULL::boolean;
	RETURN QUERY SELECT 'hist'::text, conv, h.id, h.role, h.content,
	    h.tool_calls, h.tool_call_id, NULL::text, NULL::boolean,
	    NULL::boolean
	    FROM chat_history(p_user, conv, msg, p_history) h
	    ORDER BY h.id DESC;
END
$$;

-- A stored turn read back: a 'turn' row, the turn's own messages (those
-- answering its user message, after it in the conversation) oldest
-- first, then the window of at most p_history messages before it.
CREATE OR REPLACE FUNCTION chat_turn_stored(p_user text,
	p_conversation bigint, p_message bigint, p_history integer)
RETURNS SETOF chat_turn_row
LANGUAGE plpgsql
AS $$
BEGIN
	RETURN QUERY SELECT 'turn'::text, p_conversation, p_message,
	    NULL::text, NULL::text, NULL::text, NULL::text, NULL::text,
	    NULL::boolean, NULL::boolean;
	RETURN QUERY SELECT 'own'::text, p_conversation, m.id, m.role,
	    m.content, m.tool_calls::text, m.tool_call_id, NULL::text,
	    NULL::boolean, NULL::boolean
	    FROM messages m
	    WHERE m.conversation_id = p_conversation AND m.user_id = p_user
	    AND m.id > p_message AND m.reply_to = p_message
	    ORDER BY m.id;
	RETURN QUERY SELECT 'hist'::text, p_conversation, h.id, h.role,
	    h.content, h.tool_calls, h.tool_call_id, NULL::text,
	    NULL::boolean, NULL::boolean
	    FROM chat_history(p_user, p_conversation, p_message, p_history) h
	    ORDER BY h.id DESC;
END
$$;

-- A retry takes over the turn of the user's key p_key whose attempt died
-- (its lease ran out), renewing the lease, and reads it back as
-- chat_turn_stored() does. Two retries at once: the row lock lets one in,
-- the other finds the lease taken and gets no row at all (lib/db.c: 409).
CREATE OR REPLACE FUNCTION chat_turn_resume(p_user text, p_key text,
	p_history integer)
RETURNS SETOF chat_turn_row
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET lock_timeout = '5s'
AS $$
DECLARE
	conv	bigint;
	msg	bigint;
BEGIN
	UPDATE turns t SET lease_until = now() + chat_turn_lease()
	    WHERE t.user_id = p_user AND t.idempotency_key = p_key
	    AND t.lease_until <= now()
	    RETURNING t.conversation_id, t.user_message_id INTO conv, msg;
	IF FOUND THEN
		RETURN QUERY SELECT * FROM chat_turn_stored(p_user, conv, msg,
		    p_history);
	END IF;
END
$$;

-- A finished turn read back for a retry of it: no lease, nothing
-- written. No row when the user has no such key.
CREATE OR REPLACE FUNCTION chat_turn_replay(p_user text, p_key text,
	p_history integer)
RETURNS SETOF chat_turn_row
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
AS $$
DECLARE
	conv	bigint;
	msg	bigint;
BEGIN
	SELECT t.conversation_id, t.user_message_id INTO conv, msg
	    FROM turns t
	    WHERE t.user_id = p_user AND t.idempotency_key = p_key;
	IF FOUND THEN
		RETURN QUERY SELECT * FROM chat_turn_stored(p_user, conv, msg,
		    p_history);
	END IF;
END
$$;

-- A failed attempt gives its turn up at once, so that the client's retry
-- resumes it instead of waiting out the lease.
CREATE OR REPLACE FUNCTION chat_turn_release(p_user text, p_key text)
RETURNS void
LANGUAGE sql
AS $$
	UPDATE turns SET lease_until = now()
	WHERE user_id = p_user AND idempotency_key = p_key
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
		UPDATE turns SET lease_until = now() + chat_turn_lease()
		    WHERE user_id = p_user AND idempotency_key = p_key;
	END IF;
END
$$;

-- The task tools, one function each, named tool_<name> after the tool
-- (lib/tools.c's table names them): for user p_user, with the arguments
-- lib/tools.c checked (p_args, a JSON object), the result as JSON text,
-- or NULL when no task matched. They run through task_tool(), inside a
-- turn's chat_tool() or an MCP call's mcp_tool(), under their settings.
CREATE OR REPLACE FUNCTION tool_add_task(p_user text, p_args jsonb)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
	result	text;
BEGIN
	INSERT INTO tasks (user_id, title, description)
	    VALUES (p_user, p_args->>'title',
	    COALESCE(p_args->>'description', ''))
	    RETURNING json_build_object('task_id', id, 'status', 'created',
	    'title', title)::text INTO result;
	RETURN result;
END
$$;

-- At most 100 tasks: the list must fit the model's context.
CREATE OR REPLACE FUNCTION tool_list_tasks(p_user text, p_args jsonb)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
	status	text := COALESCE(p_args->>'status', 'all');
	result	text;
BEGIN
	SELECT COALESCE(json_agg(json_build_object('id', t.id,
	    'title', t.title, 'description', t.description,
	    'completed', t.completed) ORDER BY t.id), '[]')::text
	    INTO result FROM (
	     SELECT id, title, description, completed FROM tasks
	     WHERE user_id = p_user AND (status = 'all'
	     OR completed = (status = 'completed'))
	     ORDER BY id LIMIT 100) t;
	RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION tool_complete_task(p_user text, p_args jsonb)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
	result	text;
BEGIN
	UPDATE tasks SET completed = true, updated_at = now()
	    WHERE id = (p_args->>'task_id')::bigint AND user_id = p_user
	    RETURNING json_build_object('task_id', id, 'status', 'completed',
	    'title', title)::text INTO result;
	RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION tool_delete_task(p_user text, p_args jsonb)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
	result	text;
BEGIN
	DELETE FROM tasks
	    WHERE id = (p_args->>'task_id')::bigint AND user_id = p_user
	    RETURNING json_build_object('task_id', id, 'status', 'deleted',
	    'title', title)::text INTO result;
	RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION tool_update_task(p_user text, p_args jsonb)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
	result	text;
BEGIN
	UPDATE tasks SET title = COALESCE(p_args->>'title', title),
	    description = COALESCE(p_args->>'description', description),
	    updated_at = now()
	    WHERE id = (p_args->>'task_id')::bigint AND user_id = p_user
	    RETURNING json_build_object('task_id', id, 'status', 'updated',
	    'title', title)::text INTO result;
	RETURN result;
END
$$;

-- A task tool by the name of its function (p_function, one of the tool_
-- functions above) for p_user: its result, or NULL when no task matched.
-- The one way a tool runs, for a turn's chat_tool() and for mcp_tool();
-- it runs under their settings.
CREATE OR REPLACE FUNCTION task_tool(p_user text, p_function text,
	p_args jsonb)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
	result	text;
BEGIN
	-- The name is a row of lib/tools.c's, never the caller's words;
	-- still, only a tool function may be called.
	IF p_function !~ '^tool_[a-z_]+$' THEN
		RAISE invalid_parameter_value
		    USING MESSAGE = 'not a tool: ' || p_function;
	END IF;
	EXECUTE format('SELECT %I($1, $2)', p_function)
	    INTO result USING p_user, p_args;
	RETURN result;
END
$$;

-- One tool call of a round: the tool's function (p_function; NULL for a
-- call refused before it reached the database) and the tool message with
-- its result commit together. The result is the function's, or
-- p_fallback when it gives none; the stored result is returned.
CREATE OR REPLACE FUNCTION chat_tool(p_user text, p_conversation bigint,
	p_reply_to bigint, p_call_id text, p_fallback text, p_function text,
	p_args jsonb)
RETURNS text
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET lock_timeout = '5s'
AS $$
DECLARE
	result	text;
BEGIN
	IF p_function IS NOT NULL THEN
		result := task_tool(p_user, p_function, p_args);
	END IF;
	result := COALESCE(result, p_fallback);
	INSERT INTO messages (conversation_id, user_id, role, content,
	    tool_call_id, reply_to)
	    VALUES (p_conversation, p_user, 'tool', result, p_call_id,
	    p_reply_to);
	RETURN result;
END
$$;

-- A tool called over MCP (lib/mcp.c): one statement, its own transaction,
-- under the settings of a turn's statements, and no conversation: nothing
-- but the tool's own change is written. NULL when no task matched.
CREATE OR REPLACE FUNCTION mcp_tool(p_user text, p_function text,
	p_args jsonb)
RETURNS text
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET lock_timeout = '5s'
AS $$
BEGIN
	RETURN task_tool(p_user, p_function, p_args);
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

-- A streamed turn's worker writes its record: at its start (which makes
-- the row), while someone follows it, at least every 10 s (the lease),
-- and at its end (p_done). p_events are the events not yet stored; they
-- are stored only once the stream is followed (a follower sets
-- followed, and the worker, which learns it from this or from
-- chat_stream_check(), then writes all it sent since the start, and
-- from then on every 200 ms): most streams are never followed, and for
-- them the record is two writes and a read every half second, whatever
-- the answer's length. Returns whether a stop was asked, and whether
-- the events were stored (followed). Each write renews the lease.
-- The record only serves watchers while the turn runs (the turn itself
-- is stored by the statements above, durably): its commit does not wait
-- for the disk, which would hold up the stream behind it. A crash may
-- lose its last writes; the lease then tells watchers it is over.
DROP FUNCTION IF EXISTS chat_stream_write(text, bigint, bigint, text,
	boolean);
CREATE OR REPLACE FUNCTION chat_stream_put(p_user text,
	p_conversation bigint, p_message bigint, p_events text,
	p_done boolean)
RETURNS TABLE (stop boolean, followed boolean)
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET lock_timeout = '5s'
AS $$
DECLARE
	stopped	boolean;
	seen	boolean;
	n	integer;
BEGIN
	PERFORM set_config('synchronous_commit', 'off', true);
	UPDATE turn_streams s SET batches = s.batches + 1, done = p_done,
	    lease_until = now() + chat_turn_lease()
	    WHERE s.user_message_id = p_message AND s.user_id = p_user
	    RETURNING s.stop, s.followed, s.batches INTO stopped, seen, n;
	IF NOT FOUND THEN
		DELETE FROM turn_streams t WHERE t.user_id = p_user
		    AND t.done AND t.created_at < now() - interval '1 minute';
		INSERT INTO turn_streams (user_message_id, conversation_id,
		    user_id, batches, done, lease_until)
		    VALUES (p_message, p_conversation, p_user, 1, p_done,
		    now() + chat_turn_lease());
		stopped := false;
		seen := false;
		n := 1;
	END IF;
	IF seen AND p_events <> '' THEN
		INSERT INTO turn_stream_batches (user_message_id, batch, events)
		    VALUES (p_message, n, p_events);
	END IF;
	RETURN QUERY SELECT stopped, seen;
END
$$;

-- What a streamed turn's worker reads between its writes: whether a
-- stop was asked, and whether someone follows it. No row: not the
-- user's, or cleared.
CREATE OR REPLACE FUNCTION chat_stream_check(p_user text, p_message bigint)
RETURNS TABLE (stop boolean, followed boolean)
LANGUAGE sql STABLE
AS $$
	SELECT s.stop, s.followed FROM turn_streams s
	WHERE s.user_message_id = p_message AND s.user_id = p_user
$$;

-- The running streamed turn of the user's conversation, if any, now
-- followed: its worker stores its events from then on. No row when the
-- conversation is not the user's; a row with a NULL user_message_id
-- when none runs (done, or its worker's lease ran out).
DROP FUNCTION IF EXISTS chat_stream_running(text, bigint);
CREATE OR REPLACE FUNCTION chat_stream_follow(p_user text,
	p_conversation bigint)
RETURNS TABLE (user_message_id bigint)
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET lock_timeout = '5s'
AS $$
DECLARE
	running	bigint;
BEGIN
	PERFORM FROM conversations c
	    WHERE c.id = p_conversation AND c.user_id = p_user;
	IF NOT FOUND THEN
		RETURN;
	END IF;
	UPDATE turn_streams s SET followed = true
	    WHERE s.user_message_id = (SELECT t.user_message_id
		FROM turn_streams t
		WHERE t.conversation_id = p_conversation
		AND t.user_id = p_user AND NOT t.done
		AND t.lease_until > now()
		ORDER BY t.user_message_id DESC LIMIT 1)
	    RETURNING s.user_message_id INTO running;
	RETURN QUERY SELECT running;
END
$$;

-- What a watcher reads of a stream: the events of the batches after
-- p_after (NULL when there are none), the last batch written, whether
-- the stream is done, and whether its worker still holds it. No row:
-- not the user's, or cleared. The head is read first, in the same
-- snapshot as the batches, so a "done" is never seen before the last
-- batch.
DROP FUNCTION IF EXISTS chat_stream_events(text, bigint);
CREATE OR REPLACE FUNCTION chat_stream_events(p_user text,
	p_message bigint, p_after integer)
RETURNS TABLE (events text, batches integer, done boolean,
	alive boolean)
LANGUAGE sql STABLE
SET enable_seqscan = off SET enable_bitmapscan = off
AS $$
	SELECT (SELECT string_agg(b.events, '' ORDER BY b.batch)
	    FROM turn_stream_batches b
	    WHERE b.user_message_id = s.user_message_id
	    AND b.batch > p_after), s.batches, s.done, s.lease_until > now()
	FROM turn_streams s
	WHERE s.user_message_id = p_message AND s.user_id = p_user
$$;

-- Asks the running streamed turns of the user's conversation to stop.
-- False when the conversation is not the user's.
CREATE OR REPLACE FUNCTION chat_stream_stop(p_user text,
	p_conversation bigint)
RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM FROM conversations c
	    WHERE c.id = p_conversation AND c.user_id = p_user;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	UPDATE turn_streams SET stop = true
	    WHERE conversation_id = p_conversation AND user_id = p_user
	    AND NOT done;
	RETURN true;
END
$$;
