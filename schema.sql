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

-- The shapes of a message OpenAI accepts: a role it knows, a tool result
-- naming its call, tool calls asked for only by an assistant, and
-- something said. One CHECK constraint calls it (messages_shape) rather
-- than one constraint a rule: PostgreSQL 15 reads each CHECK
-- constraint's expression back from its stored text and plans it for
-- every INSERT statement it runs, which for the four rules written out
-- cost a turn about 195,000 instructions of its database work (its two
-- messages), a sixth of it; a call of this costs a fraction of that.
CREATE OR REPLACE FUNCTION chat_message_shape_ok(p_role text,
	p_content text, p_tool_calls jsonb, p_tool_call_id text)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
	RETURN p_role IN ('user', 'assistant', 'tool')
	    AND (p_role = 'tool') = (p_tool_call_id IS NOT NULL)
	    AND (p_tool_calls IS NULL OR p_role = 'assistant')
	    AND (p_content IS NOT NULL OR p_tool_calls IS NOT NULL);
END
$$;

CREATE TABLE IF NOT EXISTS messages (
	id		bigserial PRIMARY KEY,
	conversation_id	bigint NOT NULL
			REFERENCES conversations (id) ON DELETE CASCADE,
	user_id		text NOT NULL,
	role		text NOT NULL,
	content		text,
	tool_calls	jsonb,
	tool_call_id	text,
	created_at	timestamptz NOT NULL DEFAULT now(),
	-- The turn a message belongs to: the id of the user message it
	-- answers (NULL on user messages), and for an assistant message
	-- asking for tools, which round of that turn it is.
	reply_to	bigint,
	round		integer,
	CONSTRAINT messages_shape CHECK (chat_message_shape_ok(role, content,
		tool_calls, tool_call_id))
);
-- A database from before messages_shape: its four constraints said the
-- same, so every row passes the new one; it is checked without blocking
-- writes (NOT VALID, then VALIDATE) and the old ones go.
DO $$
BEGIN
	IF EXISTS (SELECT FROM pg_constraint
	    WHERE conrelid = 'messages'::regclass
	    AND conname = 'messages_role_check') THEN
		ALTER TABLE messages ADD CONSTRAINT messages_shape
		    CHECK (chat_message_shape_ok(role, content, tool_calls,
		    tool_call_id)) NOT VALID;
		ALTER TABLE messages VALIDATE CONSTRAINT messages_shape;
		ALTER TABLE messages DROP CONSTRAINT messages_role_check,
		    DROP CONSTRAINT messages_tool_has_call_id,
		    DROP CONSTRAINT messages_only_assistant_calls,
		    DROP CONSTRAINT messages_not_empty;
	END IF;
END
$$;
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

-- What each model call reported it used, on the message it produced (an
-- assistant message); NULL where the model said nothing (the offline
-- model, a server that sends no usage, a stream cut short).
ALTER TABLE messages ADD COLUMN IF NOT EXISTS prompt_tokens integer;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS completion_tokens integer;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS cached_tokens integer;

-- One row per user: the row every turn of the user locks first, so that
-- the per-user limits hold across all workers and hosts (through
-- pgbouncer in transaction mode, where session locks are no use), and
-- what those limits read:
--   turn_starts: when the user's turns of the last minute started (at
--     most CHAT_USER_TURNS_PER_MINUTE of them are kept);
--   running_turns: the turns running now, each by its user message's
--     id, added by the turn's first statement and taken off by its last
--     (or by its release when it fails). An entry whose worker died
--     stops counting once the turn has stored nothing for a lease and
--     its stream record, if any, has run out: the exact count
--     (chat_turn_refusal()) reads when the turn's user message and
--     newest round were stored, so that no round has to renew anything
--     here.
--   tasks, conversations, messages: what the user stores, counted as it
--     is written and deleted (the storage caps), so that no turn counts
--     rows.
--   day and day_*: the user's use of that UTC day (answered turns and
--     the tokens the model reported), added to by the statement that
--     stores each model call's messages. Kept here rather than in a row
--     of usage_days so that a turn writes one row of the user's, not
--     two: the day moves to usage_days when the user's first call of a
--     later day is stored (chat_user_roll()).
-- Statements take the rows of one user in one order, so that two of
-- them never wait on each other in turn: a conversation's (one at
-- most), then the user's, then the user's rows of usage_days.
CREATE TABLE IF NOT EXISTS chat_users (
	user_id		text PRIMARY KEY,
	turn_starts	timestamptz[] NOT NULL DEFAULT '{}',
	running_turns	bigint[] NOT NULL DEFAULT '{}',
	tasks		integer NOT NULL DEFAULT 0,
	conversations	integer NOT NULL DEFAULT 0,
	messages	bigint NOT NULL DEFAULT 0,
	day		date NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')::date,
	day_turns	integer NOT NULL DEFAULT 0,
	day_prompt	bigint NOT NULL DEFAULT 0,
	day_completion	bigint NOT NULL DEFAULT 0,
	day_cached	bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 70);	-- room for the updates of every turn

-- A user's use of each UTC day before the one chat_users holds: what
-- GET /chat/usage and the operator's query (README; the view
-- usage_by_day) read without scanning a user's history. turns counts
-- answered turns.
CREATE TABLE IF NOT EXISTS usage_days (
	user_id		text NOT NULL,
	day		date NOT NULL,
	turns		integer NOT NULL DEFAULT 0,
	prompt_tokens	bigint NOT NULL DEFAULT 0,
	completion_tokens bigint NOT NULL DEFAULT 0,
	cached_tokens	bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (user_id, day)
) WITH (fillfactor = 70);

-- A database from before the day columns: they are added, and today's
-- rows of usage_days move into them. Workers of the old schema.sql that
-- still run may add to usage_days' row of today: every reader of
-- today's use adds that row in too.
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_attribute
	    WHERE attrelid = 'chat_users'::regclass AND attname = 'day'
	    AND NOT attisdropped) THEN
		ALTER TABLE chat_users
		    ADD COLUMN day date NOT NULL
		     DEFAULT (now() AT TIME ZONE 'UTC')::date,
		    ADD COLUMN day_turns integer NOT NULL DEFAULT 0,
		    ADD COLUMN day_prompt bigint NOT NULL DEFAULT 0,
		    ADD COLUMN day_completion bigint NOT NULL DEFAULT 0,
		    ADD COLUMN day_cached bigint NOT NULL DEFAULT 0;
		UPDATE chat_users u SET day = d.day, day_turns = d.turns,
		    day_prompt = d.prompt_tokens,
		    day_completion = d.completion_tokens,
		    day_cached = d.cached_tokens
		    FROM usage_days d WHERE d.user_id = u.user_id
		    AND d.day = (now() AT TIME ZONE 'UTC')::date;
		DELETE FROM usage_days d USING chat_users u
		    WHERE d.user_id = u.user_id AND d.day = u.day;
	END IF;
END
$$;

-- A database from before running_turns, whose running entries were by
-- conversation, each with a lease of its own: they go, and the turns
-- running as schema.sql is loaded count as ended.
DO $$
BEGIN
	IF EXISTS (SELECT FROM pg_attribute
	    WHERE attrelid = 'chat_users'::regclass
	    AND attname = 'running_until' AND NOT attisdropped) THEN
		ALTER TABLE chat_users
		    ADD COLUMN running_turns bigint[] NOT NULL DEFAULT '{}',
		    DROP COLUMN running_conversations,
		    DROP COLUMN running_until;
	END IF;
END
$$;

-- Every user's use by UTC day, the days of usage_days and each user's
-- current day together (a day may show in two rows the day schema.sql
-- is deployed: sum by day). What the operator's query in README reads.
CREATE OR REPLACE VIEW usage_by_day AS
	SELECT user_id, day, turns, prompt_tokens, completion_tokens,
	    cached_tokens
	FROM usage_days
	UNION ALL
	SELECT user_id, day, day_turns, day_prompt, day_completion, day_cached
	FROM chat_users
	WHERE day_turns > 0 OR day_prompt > 0 OR day_completion > 0
	    OR day_cached > 0;

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
--   plan_cache_mode force_generic_plan (the first and last statements
--     of a turn): their statements read the limits and the usage from
--     parameters, and a plan made for given values drops the checks of
--     limits that are off, so PostgreSQL finds such custom plans cheaper
--     than the generic one and makes one anew on every call: the
--     planning then cost a turn more than the checks themselves.
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
-- Added since: a turn refused by a per-user limit ('refused': the error
-- code and the seconds to wait), and what each 'own' message's model
-- call used (so that a replayed turn reports its usage again).
DO $$
BEGIN
	ALTER TYPE chat_turn_row ADD ATTRIBUTE refusal text,
	    ADD ATTRIBUTE retry_after integer,
	    ADD ATTRIBUTE prompt_tokens integer,
	    ADD ATTRIBUTE completion_tokens integer;
EXCEPTION WHEN duplicate_column THEN
	NULL;
END
$$;

-- Earlier versions of schema.sql returned other shapes, or took other
-- arguments; CREATE OR REPLACE cannot change either.
DROP FUNCTION IF EXISTS chat_turn_begin(text, bigint, text, text, integer,
	text, text);
DROP FUNCTION IF EXISTS chat_tool(text, bigint, bigint, text, text, text,
	bigint, text, text, text);
DROP FUNCTION IF EXISTS chat_round(text, bigint, bigint, integer, text,
	jsonb, text);
DROP FUNCTION IF EXISTS chat_round(text, bigint, bigint, integer, text,
	jsonb, text, integer[], integer);
DROP FUNCTION IF EXISTS chat_turn_finish(text, bigint, text, bigint);
DROP FUNCTION IF EXISTS chat_turn_begin(text, bigint, text, text, integer,
	text, text, integer[]);
DROP FUNCTION IF EXISTS chat_turn_finish(text, bigint, text, bigint,
	integer[]);
DROP FUNCTION IF EXISTS chat_turn_release(text, text);
DROP FUNCTION IF EXISTS chat_rate_window(timestamptz[], integer);
DROP FUNCTION IF EXISTS chat_running_drop(text, bigint, integer);
DROP FUNCTION IF EXISTS chat_running_drop(text, bigint);
DROP FUNCTION IF EXISTS chat_running_without(anyarray, bigint[], bigint);
-- chat_turn_release() named the conversation before running entries
-- were by turn (CREATE OR REPLACE cannot rename an argument).
DO $$
BEGIN
	IF EXISTS (SELECT FROM pg_proc WHERE proname = 'chat_turn_release'
	    AND 'p_conversation' = ANY (proargnames)) THEN
		DROP FUNCTION chat_turn_release(text, text, bigint);
	END IF;
END
$$;

-- The user's row of chat_users, locked until the transaction ends;
-- made on the user's first use, its counters then taken from what the
-- user already stores (once: a cost a user pays only once). Two first
-- uses at once: ON CONFLICT waits for the other's row, which the second
-- SELECT then sees.
CREATE OR REPLACE FUNCTION chat_user_lock(p_user text)
RETURNS chat_users
LANGUAGE plpgsql
AS $$
DECLARE
	u	chat_users;
BEGIN
	SELECT * INTO u FROM chat_users c WHERE c.user_id = p_user
	    FOR NO KEY UPDATE;
	IF FOUND THEN
		RETURN u;
	END IF;
	INSERT INTO chat_users (user_id, tasks, conversations, messages)
	    SELECT p_user,
	    (SELECT count(*) FROM tasks t WHERE t.user_id = p_user),
	    (SELECT count(*) FROM conversations c WHERE c.user_id = p_user),
	    (SELECT count(*) FROM conversations c JOIN messages m
	     ON m.conversation_id = c.id WHERE c.user_id = p_user)
	    ON CONFLICT (user_id) DO NOTHING;
	SELECT * INTO u FROM chat_users c WHERE c.user_id = p_user
	    FOR NO KEY UPDATE;
	RETURN u;
END
$$;

-- The window of CHAT_USER_TURNS_PER_MINUTE: a turn counts against the
-- limit for this long after it started.
CREATE OR REPLACE FUNCTION chat_rate_window()
RETURNS interval
LANGUAGE sql IMMUTABLE
AS $$ SELECT interval '1 minute' $$;

-- Seconds until one more turn may start under a limit of p_limit turns
-- a window (0: now; p_limit 0: no limit), p_starts being when the
-- user's turns of the window started, oldest first: with n of them, the
-- (n - p_limit + 1)-th oldest must leave the window first. A plain
-- expression, which PostgreSQL inlines where it is called.
CREATE OR REPLACE FUNCTION chat_rate_wait(p_starts timestamptz[],
	p_limit integer)
RETURNS integer
LANGUAGE sql STABLE
AS $$
	SELECT CASE WHEN p_limit > 0 AND cardinality(p_starts) >= p_limit
	    THEN greatest(1, ceil(extract(epoch FROM
	    p_starts[cardinality(p_starts) - p_limit + 1]
	    + chat_rate_window() - now())))::integer
	    ELSE 0 END
$$;

-- Counts one turn start for p_user against a limit of p_turns_per_minute
-- (0: none), taking the user's row lock: 0 when it was counted, else the
-- seconds until it would be, nothing written. A turn's chat_turn_begin()
-- does the same; what calls a tool outside a turn (MCP's tools/call)
-- calls this in the statement that runs the tool, and runs the tool only
-- on 0.
CREATE OR REPLACE FUNCTION chat_rate_check(p_user text,
	p_turns_per_minute integer)
RETURNS integer
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET lock_timeout = '5s'
AS $$
DECLARE
	starts	timestamptz[];
	wait	integer;
BEGIN
	IF p_turns_per_minute <= 0 THEN
		RETURN 0;
	END IF;
	PERFORM chat_user_lock(p_user);
	SELECT ARRAY(SELECT s FROM unnest(c.turn_starts) s
	    WHERE s > now() - chat_rate_window() ORDER BY s)
	    INTO starts FROM chat_users c WHERE c.user_id = p_user;
	wait := chat_rate_wait(starts, p_turns_per_minute);
	IF wait > 0 THEN
		RETURN wait;
	END IF;
	UPDATE chat_users SET turn_starts = starts || now()
	    WHERE user_id = p_user;
	RETURN 0;
END
$$;

-- Seconds from now to the next UTC midnight, when a day's quota renews.
CREATE OR REPLACE FUNCTION chat_until_tomorrow()
RETURNS integer
LANGUAGE sql STABLE
AS $$
	SELECT greatest(1, ceil(extract(epoch FROM
	    date_trunc('day', now() AT TIME ZONE 'UTC') + interval '1 day'
	    - (now() AT TIME ZONE 'UTC'))))::integer
$$;

-- How long a refusal for stored rows tells the client to wait: nothing
-- frees them but the user deleting some, so a retry is a day away.
CREATE OR REPLACE FUNCTION chat_storage_retry()
RETURNS integer
LANGUAGE sql IMMUTABLE
AS $$ SELECT 86400 $$;

-- Moves the user's day in chat_users to usage_days when it is a day
-- before today (UTC), and starts today's at zero; the user's row is
-- locked (made on first use). For the statement that adds a model
-- call's use and finds the row still on an earlier day: once a user and
-- day at most.
DROP FUNCTION IF EXISTS chat_usage_add(text, integer, integer[]);
CREATE OR REPLACE FUNCTION chat_user_roll(p_user text)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	u	chat_users;
	today	date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
	u := chat_user_lock(p_user);
	IF u.day = today THEN
		RETURN;
	END IF;
	IF u.day_turns > 0 OR u.day_prompt > 0 OR u.day_completion > 0
	    OR u.day_cached > 0 THEN
		INSERT INTO usage_days AS d (user_id, day, turns,
		    prompt_tokens, completion_tokens, cached_tokens)
		    VALUES (p_user, u.day, u.day_turns, u.day_prompt,
		    u.day_completion, u.day_cached)
		    ON CONFLICT (user_id, day) DO UPDATE SET
		    turns = d.turns + EXCLUDED.turns,
		    prompt_tokens = d.prompt_tokens + EXCLUDED.prompt_tokens,
		    completion_tokens = d.completion_tokens
		    + EXCLUDED.completion_tokens,
		    cached_tokens = d.cached_tokens + EXCLUDED.cached_tokens;
	END IF;
	UPDATE chat_users SET day = today, day_turns = 0, day_prompt = 0,
	    day_completion = 0, day_cached = 0
	    WHERE user_id = p_user;
END
$$;

-- Why a turn of p_user may not start now under p_limits (as
-- chat_turn_begin() takes them; p_new: it starts a conversation): the
-- error code and the seconds to wait, or NULLs when nothing stops it.
-- Makes the user's row on their first turn. Only for a turn that
-- chat_turn_begin()'s quick check did not let through, so every count
-- here is taken exactly; when nothing stops the turn, the arrays are
-- pruned of what has run out, so that the quick check passes again.
-- A running entry counts while its turn is unanswered and has stored
-- its user message or its newest round less than a lease (p_limits[6]
-- seconds) ago, or holds a live stream record: a turn whose worker died
-- stops counting a lease after its last sign of life, as one that lives
-- never does between its rounds (each model call ends within the lease,
-- lib/db.c, but a streamed one, which may run longer, keeps its stream
-- record's lease: its worker renews it every 10 s while the call runs,
-- lib/live.h). The entry of a turn whose conversation was deleted finds
-- no message, and goes.
CREATE OR REPLACE FUNCTION chat_turn_refusal(p_user text, p_new boolean,
	p_limits integer[], OUT code text, OUT wait integer)
LANGUAGE plpgsql
AS $$
DECLARE
	u	chat_users;
	today	date := (now() AT TIME ZONE 'UTC')::date;
	alive	bigint[];
	running	integer;
	used	bigint;
BEGIN
	u := chat_user_lock(p_user);
	alive := ARRAY(SELECT r.id FROM unnest(u.running_turns) r(id)
	    WHERE (greatest((SELECT m.created_at FROM messages m
	     WHERE m.id = r.id AND m.user_id = p_user),
	     (SELECT max(m.created_at) FROM messages m
	     WHERE m.reply_to = r.id AND m.tool_calls IS NOT NULL))
	     > now() - make_interval(secs => p_limits[6])
	    OR EXISTS (SELECT FROM turn_streams s
	     WHERE s.user_message_id = r.id AND s.user_id = p_user
	     AND NOT s.done AND s.lease_until > now()))
	    AND NOT EXISTS (SELECT FROM messages m WHERE m.reply_to = r.id
	     AND m.role = 'assistant' AND m.tool_calls IS NULL));
	running := cardinality(alive);
	wait := chat_rate_wait(ARRAY(SELECT t FROM unnest(u.turn_starts) t
	    WHERE t > now() - chat_rate_window() ORDER BY t), p_limits[2]);
	-- Today's use: the user's day, and a row of usage_days that
	-- workers of an older schema.sql may have written.
	SELECT COALESCE(sum(d.prompt_tokens + d.completion_tokens), 0)
	    INTO used FROM usage_days d
	    WHERE d.user_id = p_user AND d.day = today;
	IF u.day = today THEN
		used := used + u.day_prompt + u.day_completion;
	END IF;
	IF p_limits[1] > 0 AND running >= p_limits[1] THEN
		-- A turn takes seconds: a short wait, not the lease's.
		code := 'too_many_turns';
		wait := 5;
	ELSIF wait > 0 THEN
		code := 'rate_limited';
	ELSIF p_limits[3] > 0 AND used >= p_limits[3] THEN
		code := 'quota_exceeded';
		wait := chat_until_tomorrow();
	ELSIF (p_limits[4] > 0 AND p_new AND u.conversations >= p_limits[4])
	    OR (p_limits[5] > 0 AND u.messages >= p_limits[5]) THEN
		code := 'quota_exceeded';
		wait := chat_storage_retry();
	ELSE
		wait := NULL;
		UPDATE chat_users c SET
		    turn_starts = ARRAY(SELECT t FROM unnest(c.turn_starts) t
		     WHERE t > now() - chat_rate_window() ORDER BY t),
		    running_turns = alive
		    WHERE c.user_id = p_user;
	END IF;
END
$$;

-- The first statement of a turn. With an Idempotency-Key (p_key) already
-- used by the user, one 'prior' row describes that turn and nothing is
-- written: the same turn, never refused by a limit. Then the per-user
-- limits (p_limits, below; 0 turns one off): one over them is a single
-- 'refused' row (the error code and the seconds to wait) and nothing
-- written. Otherwise: the conversation created (p_conversation NULL) or
-- locked (the user's; no row at all when it is not), the user message
-- stored, the key recorded, the turn counted as started and running, a
-- streamed turn's live record made (p_stream), and a 'new' row returned
-- with the window of at most p_history messages before it. The limits
-- are checked in the update of the user's row (chat_users), whose row
-- lock orders the turns of one user across every worker, so that
-- exactly the limit pass however many start at once (one that waits
-- for the lock checks the row as the other left it);
-- the conversation's row lock orders every write to it,
-- so the messages of concurrent turns never interleave inside a round.
-- A concurrent first attempt with the same key fails on the turns
-- primary key, which rolls the whole turn back (lib/db.c: 409).
--
-- p_limits: concurrent turns, turns per minute, tokens per UTC day,
-- conversations, messages, and the seconds a running turn's lease lasts
-- (lib/db.c: db_turn_begin()).
CREATE OR REPLACE FUNCTION chat_turn_begin(p_user text,
	p_conversation bigint, p_title text, p_message text,
	p_history integer, p_key text, p_hash text, p_limits integer[],
	p_stream boolean DEFAULT false)
RETURNS SETOF chat_turn_row
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET lock_timeout = '5s' SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	max_running	integer := p_limits[1];
	per_minute	integer := p_limits[2];
	today		date := (now() AT TIME ZONE 'UTC')::date;
	-- The quick check's bounds: each limit, or one that nothing
	-- reaches when it is off (0).
	starts_cap	integer := CASE WHEN p_limits[2] > 0 THEN p_limits[2]
			    ELSE 2147483647 END;
	running_cap	integer := CASE WHEN p_limits[1] > 0 THEN p_limits[1]
			    ELSE 2147483647 END;
	tokens_cap	bigint := CASE WHEN p_limits[3] > 0 THEN p_limits[3]
			    ELSE 9223372036854775807 END;
	conv_cap	integer := CASE WHEN p_limits[4] > 0
			    AND p_conversation IS NULL THEN p_limits[4]
			    ELSE 2147483647 END;
	messages_cap	bigint := CASE WHEN p_limits[5] > 0 THEN p_limits[5]
			    ELSE 9223372036854775807 END;
	new_conv	integer := (p_conversation IS NULL)::integer;
	refusal		record;
	counted		boolean := false;
	conv		bigint;
	msg		bigint;
	new_row		chat_turn_row;
BEGIN
	IF p_key IS NOT NULL THEN
		RETURN QUERY SELECT 'prior'::text, t.conversation_id,
		    t.user_message_id, NULL::text, NULL::text, NULL::text,
		    NULL::text, t.request_hash, t.lease_until > now(), EXISTS (
		     SELECT 1 FROM messages a
		     WHERE a.reply_to = t.user_message_id
		     AND a.role = 'assistant' AND a.tool_calls IS NULL),
		    NULL::text, NULL::integer, NULL::integer, NULL::integer
		    FROM turns t
		    WHERE t.user_id = p_user AND t.idempotency_key = p_key;
		IF FOUND THEN
			RETURN;
		END IF;
	END IF;
	-- The conversation first, then the user's row, in every statement
	-- that takes both (so that two never wait on each other). A new
	-- one's id is taken now, the row made once the turn may start.
	IF p_conversation IS NULL THEN
		conv := nextval('conversations_id_seq');
	ELSE
		SELECT c.id INTO conv FROM conversations c
		    WHERE c.id = p_conversation AND c.user_id = p_user
		    FOR NO KEY UPDATE;
		IF NOT FOUND THEN
			RETURN;
		END IF;
	END IF;
	-- The user message's id, which names the turn's running entry,
	-- taken under the conversation's lock as every id of its messages
	-- is: their order is the conversation's.
	msg := nextval('messages_id_seq');
	-- Twice at most: the first time may find no row (the user's first
	-- turn), which chat_turn_refusal() makes.
	FOR attempt IN 1 .. 2 LOOP
		-- The turn counted as started and running, and its message
		-- (and conversation) as stored, if it is under every limit.
		-- The quick check, in one plain update of the user's row:
		-- arrays shorter than their limit, today's tokens under the
		-- quota. Nearly every turn passes it; one that does not (near a
		-- limit, or an array full of entries that have run out) gets
		-- the exact count of chat_turn_refusal(), which prunes the
		-- arrays when the turn may start after all. An array of a limit
		-- that is off stays empty. (Subqueries here would cost every
		-- turn their set-up, run or not: measured, a tenth of the
		-- turn's time in the database.)
		UPDATE chat_users u SET
		    turn_starts = CASE WHEN per_minute > 0
		     THEN u.turn_starts || now() ELSE '{}' END,
		    running_turns = CASE WHEN max_running > 0
		     THEN u.running_turns || msg ELSE '{}' END,
		    conversations = u.conversations + new_conv,
		    messages = u.messages + 1
		    WHERE u.user_id = p_user
		    AND cardinality(u.turn_starts) < starts_cap
		    AND cardinality(u.running_turns) < running_cap
		    AND (u.day <> today
		     OR u.day_prompt + u.day_completion < tokens_cap)
		    AND u.conversations < conv_cap
		    AND u.messages < messages_cap;
		counted := FOUND;
		EXIT WHEN counted;
		refusal := chat_turn_refusal(p_user, p_conversation IS NULL,
		    p_limits);
		IF refusal.code IS NOT NULL THEN
			RETURN QUERY SELECT 'refused'::text, NULL::bigint,
			    NULL::bigint, NULL::text, NULL::text, NULL::text,
			    NULL::text, NULL::text, NULL::boolean,
			    NULL::boolean, refusal.code, refusal.wait,
			    NULL::integer, NULL::integer;
			RETURN;
		END IF;
	END LOOP;
	IF NOT counted THEN
		RAISE EXCEPTION 'the limits of user % could not be checked',
		    p_user;
	END IF;
	IF p_conversation IS NULL THEN
		INSERT INTO conversations (id, user_id, title)
		    VALUES (conv, p_user, p_title);
	END IF;
	INSERT INTO messages (id, conversation_id, user_id, role, content)
	    VALUES (msg, conv, p_user, 'user', p_message);
	IF p_key IS NOT NULL THEN
		DELETE FROM turns t WHERE t.user_id = p_user
		    AND t.idempotency_key <> p_key
		    AND t.created_at < now() - interval '24 hours';
		INSERT INTO turns (user_id, idempotency_key, request_hash,
		    conversation_id, user_message_id, lease_until)
		    VALUES (p_user, p_key, p_hash, conv, msg,
		    now() + chat_turn_lease());
	END IF;
	-- A streamed turn's live record, made here rather than by a
	-- statement of its own (chat_stream_put() makes it for a turn taken
	-- up by a retry): its first batch, not followed yet.
	IF p_stream THEN
		DELETE FROM turn_streams t WHERE t.user_id = p_user
		    AND t.done AND t.created_at < now() - interval '1 minute';
		INSERT INTO turn_streams (user_message_id, conversation_id,
		    user_id, batches, lease_until)
		    VALUES (msg, conv, p_user, 1, now() + chat_turn_lease());
	END IF;
	-- The 'new' row made from variables, not by a query, whose set-up
	-- in the executor cost the turn 20,000 instructions (2% of its
	-- backend's; bench/instructions.pl).
	new_row.kind := 'new';
	new_row.conversation_id := conv;
	new_row.message_id := msg;
	RETURN NEXT new_row;
	RETURN QUERY SELECT 'hist'::text, conv, h.id, h.role, h.content,
	    h.tool_calls, h.tool_call_id, NULL::text, NULL::boolean,
	    NULL::boolean, NULL::text, NULL::integer, NULL::integer,
	    NULL::integer
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
	    NULL::boolean, NULL::boolean, NULL::text, NULL::integer,
	    NULL::integer, NULL::integer;
	RETURN QUERY SELECT 'own'::text, p_conversation, m.id, m.role,
	    m.content, m.tool_calls::text, m.tool_call_id, NULL::text,
	    NULL::boolean, NULL::boolean, NULL::text, NULL::integer,
	    m.prompt_tokens, m.completion_tokens
	    FROM messages m
	    WHERE m.conversation_id = p_conversation AND m.user_id = p_user
	    AND m.id > p_message AND m.reply_to = p_message
	    ORDER BY m.id;
	RETURN QUERY SELECT 'hist'::text, p_conversation, h.id, h.role,
	    h.content, h.tool_calls, h.tool_call_id, NULL::text,
	    NULL::boolean, NULL::boolean, NULL::text, NULL::integer,
	    NULL::integer, NULL::integer
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

-- A failed attempt gives its turn up at once: it (the turn answering
-- user message p_message) stops counting as running, and, with its key
-- (p_key not NULL), the client's retry resumes it instead of waiting
-- out the lease.
CREATE OR REPLACE FUNCTION chat_turn_release(p_user text, p_key text,
	p_message bigint)
RETURNS void
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET lock_timeout = '5s'
AS $$
BEGIN
	UPDATE chat_users c
	    SET running_turns = array_remove(c.running_turns, p_message)
	    WHERE c.user_id = p_user AND p_message = ANY (c.running_turns);
	IF p_key IS NOT NULL THEN
		UPDATE turns SET lease_until = now()
		    WHERE user_id = p_user AND idempotency_key = p_key;
	END IF;
END
$$;

-- A round of tool calls begins: the conversation's row lock (taken as an
-- UPDATE would take it, without writing a new row version: only the
-- turn's last statement bumps updated_at), the user's row (the round's
-- messages counted, the model call's usage, p_usage as
-- chat_turn_finish() takes it, added to the day), the assistant message
-- asking for the calls as round p_round of the turn answering
-- p_reply_to (which keeps the turn's running entry counting for another
-- lease: chat_turn_refusal()), and the lease of the turn's key renewed.
-- A conversation deleted meanwhile is a foreign key violation (lib/db.c:
-- 404); a round stored twice fails on messages_round_once_idx (409). The
-- calls follow, in the same transaction: chat_tool().
CREATE OR REPLACE FUNCTION chat_round(p_user text, p_conversation bigint,
	p_reply_to bigint, p_round integer, p_content text,
	p_tool_calls jsonb, p_key text, p_usage integer[])
RETURNS void
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET lock_timeout = '5s'
AS $$
DECLARE
	today	date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
	PERFORM FROM conversations c
	    WHERE c.id = p_conversation AND c.user_id = p_user
	    FOR NO KEY UPDATE;
	IF NOT FOUND THEN
		RAISE foreign_key_violation
		    USING MESSAGE = 'conversation is gone';
	END IF;
	-- The call's use added to the user's day; a day before today is
	-- moved to usage_days first (once a user and day).
	FOR attempt IN 1 .. 2 LOOP
		UPDATE chat_users c SET messages = c.messages + 1
		    + jsonb_array_length(p_tool_calls),
		    day_prompt = c.day_prompt + COALESCE(p_usage[1], 0),
		    day_completion = c.day_completion
		    + COALESCE(p_usage[2], 0),
		    day_cached = c.day_cached + COALESCE(p_usage[3], 0)
		    WHERE c.user_id = p_user AND c.day = today;
		EXIT WHEN FOUND;
		PERFORM chat_user_roll(p_user);
	END LOOP;
	INSERT INTO messages (conversation_id, user_id, role, content,
	    tool_calls, reply_to, round, prompt_tokens, completion_tokens,
	    cached_tokens)
	    VALUES (p_conversation, p_user, 'assistant', p_content,
	    p_tool_calls, p_reply_to, p_round, p_usage[1], p_usage[2],
	    p_usage[3]);
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
	-- CHAT_USER_MAX_TASKS, which lib/tools.c adds to the arguments.
	max_tasks	integer := COALESCE((p_args->>'max_tasks')::integer, 0);
	u		chat_users;
	result		text;
BEGIN
	u := chat_user_lock(p_user);
	IF max_tasks > 0 AND u.tasks >= max_tasks THEN
		RETURN json_build_object('error', format('The user already '
		    'has %s tasks, the most they may keep: nothing was '
		    'added. They can delete tasks they no longer need.',
		    u.tasks))::text;
	END IF;
	INSERT INTO tasks (user_id, title, description)
	    VALUES (p_user, p_args->>'title',
	    COALESCE(p_args->>'description', ''))
	    RETURNING json_build_object('task_id', id, 'status', 'created',
	    'title', title)::text INTO result;
	UPDATE chat_users SET tasks = tasks + 1 WHERE user_id = p_user;
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
	IF result IS NOT NULL THEN
		UPDATE chat_users SET tasks = greatest(tasks - 1, 0)
		    WHERE user_id = p_user;
	END IF;
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
-- but the tool's own change is written. It counts as a turn against
-- p_turns_per_minute (0: no limit), in the same statement: over it,
-- retry_after is the seconds to wait and nothing runs. Else result is
-- the tool's, NULL when no task matched.
DROP FUNCTION IF EXISTS mcp_tool(text, text, jsonb);
CREATE OR REPLACE FUNCTION mcp_tool(p_user text, p_function text,
	p_args jsonb, p_turns_per_minute integer)
RETURNS TABLE (result text, retry_after integer)
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET lock_timeout = '5s'
AS $$
DECLARE
	wait	integer;
BEGIN
	wait := chat_rate_check(p_user, p_turns_per_minute);
	IF wait > 0 THEN
		RETURN QUERY SELECT NULL::text, wait;
		RETURN;
	END IF;
	RETURN QUERY SELECT task_tool(p_user, p_function, p_args), 0;
END
$$;

-- The last statement of a turn: the answer stored with what its model
-- call used (p_usage: prompt, completion and cached tokens, each NULL
-- when not reported), the conversation's updated_at bumped, the turn no
-- longer running, and the user's day counted: one answered turn, the
-- call's tokens (a round's were counted by its chat_round()). A
-- streamed turn (p_stream) also ends its live record here when no one
-- follows it, which then needs none of the stream's events. Returns
-- NULL when the conversation is gone; else whether the live record is
-- left open for the worker's last chat_stream_put() (followed, so its
-- last events must be stored before it ends; or made by
-- chat_stream_put(), not chat_turn_begin()); false for a turn not
-- streamed. A plain value, so that the worker's call is a select list
-- (a FROM clause cost the planner 66,000 instructions more). A second
-- answer to the same turn fails on messages_answer_once_idx (409).
-- Plain statements, the
-- rows in the order every statement takes them: the conversation's,
-- then the user's (one statement with CTEs cost more to set up than
-- the three).
CREATE OR REPLACE FUNCTION chat_turn_finish(p_user text,
	p_conversation bigint, p_answer text, p_reply_to bigint,
	p_usage integer[], p_stream boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET lock_timeout = '5s' SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	today		date := (now() AT TIME ZONE 'UTC')::date;
	stream_open	boolean := p_stream;
BEGIN
	UPDATE conversations SET updated_at = now()
	    WHERE id = p_conversation AND user_id = p_user;
	IF NOT FOUND THEN
		RETURN NULL;
	END IF;
	INSERT INTO messages (conversation_id, user_id, role, content,
	    reply_to, prompt_tokens, completion_tokens, cached_tokens)
	    VALUES (p_conversation, p_user, 'assistant', p_answer,
	    p_reply_to, p_usage[1], p_usage[2], p_usage[3]);
	IF p_stream THEN
		UPDATE turn_streams s SET batches = s.batches + 1, done = true
		    WHERE s.user_message_id = p_reply_to AND s.user_id = p_user
		    AND NOT s.followed;
		stream_open := NOT FOUND;
	END IF;
	-- A day before today is moved to usage_days first (once a user
	-- and day).
	FOR attempt IN 1 .. 2 LOOP
		UPDATE chat_users u SET
		    running_turns = array_remove(u.running_turns, p_reply_to),
		    messages = u.messages + 1,
		    day_turns = u.day_turns + 1,
		    day_prompt = u.day_prompt + COALESCE(p_usage[1], 0),
		    day_completion = u.day_completion
		    + COALESCE(p_usage[2], 0),
		    day_cached = u.day_cached + COALESCE(p_usage[3], 0)
		    WHERE u.user_id = p_user AND u.day = today;
		EXIT WHEN FOUND;
		PERFORM chat_user_roll(p_user);
	END LOOP;
	RETURN stream_open;
END
$$;

-- Deletes the user's conversation (its messages go by cascade) and
-- takes it and its messages off the user's counts; false when it is not
-- the user's. The conversation is locked first, then the user's row, as
-- a turn takes them.
CREATE OR REPLACE FUNCTION chat_conversation_delete(p_user text,
	p_conversation bigint)
RETURNS boolean
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off
SET lock_timeout = '5s'
AS $$
DECLARE
	n	bigint;
BEGIN
	PERFORM FROM conversations c
	    WHERE c.id = p_conversation AND c.user_id = p_user FOR UPDATE;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	SELECT count(*) INTO n FROM messages m
	    WHERE m.conversation_id = p_conversation AND m.user_id = p_user;
	DELETE FROM conversations
	    WHERE id = p_conversation AND user_id = p_user;
	PERFORM chat_user_lock(p_user);
	UPDATE chat_users SET conversations = greatest(conversations - 1, 0),
	    messages = greatest(messages - n, 0)
	    WHERE user_id = p_user;
	RETURN true;
END
$$;
-- The user's use today and this month (UTC): the user's day in
-- chat_users and at most a month of rows of usage_days, read along its
-- primary key.
CREATE OR REPLACE FUNCTION chat_usage(p_user text)
RETURNS TABLE (day_turns bigint, day_prompt bigint, day_completion bigint,
	month_turns bigint, month_prompt bigint, month_completion bigint)
LANGUAGE sql STABLE
SET enable_seqscan = off SET enable_bitmapscan = off
AS $$
	SELECT COALESCE(sum(x.turns) FILTER (WHERE x.day = t.today), 0),
	    COALESCE(sum(x.prompt) FILTER (WHERE x.day = t.today), 0),
	    COALESCE(sum(x.completion) FILTER (WHERE x.day = t.today), 0),
	    COALESCE(sum(x.turns), 0), COALESCE(sum(x.prompt), 0),
	    COALESCE(sum(x.completion), 0)
	FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS today) t,
	LATERAL (SELECT d.day, d.turns, d.prompt_tokens AS prompt,
	     d.completion_tokens AS completion
	    FROM usage_days d WHERE d.user_id = p_user
	    AND d.day >= date_trunc('month', t.today)::date
	    AND d.day <= t.today
	    UNION ALL
	    SELECT u.day, u.day_turns, u.day_prompt, u.day_completion
	    FROM chat_users u WHERE u.user_id = p_user
	    AND u.day >= date_trunc('month', t.today)::date
	    AND u.day <= t.today) x
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
