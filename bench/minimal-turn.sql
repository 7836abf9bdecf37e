-- bench/minimal-turn.sql: the minimal turn, what a chat turn cannot do
-- with less: two statements, two commits. The first stores the user's
-- message and reads the newest 40 of its conversation; the second stores
-- the answer, replying to the new message (\aset keeps the last row's id
-- as r_mid), and bumps the conversation's updated_at. pgbench variables:
-- conv (a conversation, whose id names its user too), msg and answer.
-- bench/perf.pl and bench/instructions.pl measure the service against it.
WITH m AS (
 INSERT INTO messages (conversation_id, user_id, role, content)
 VALUES (:conv, :conv, 'user', :msg) RETURNING id)
SELECT m.id AS mid, h.* FROM m LEFT JOIN LATERAL (
 SELECT id, role, content, tool_calls::text AS tool_calls, tool_call_id
 FROM messages WHERE conversation_id = :conv ORDER BY id DESC LIMIT 40
) h ON true ORDER BY h.id DESC
\aset r_
WITH c AS (
 UPDATE conversations SET updated_at = now() WHERE id = :conv
 RETURNING id)
INSERT INTO messages (conversation_id, user_id, role, content, reply_to)
SELECT id, :conv, 'assistant', :answer, :r_mid FROM c;
