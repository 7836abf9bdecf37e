#!/usr/bin/env python3
"""t/mock_model.py: an OpenAI-compatible chat-completions server for tests.

It rejects what OpenAI would reject (400 with an OpenAI-shaped error, 401
for a bad key when --key is given, 404 for another method or path), and
otherwise answers from a script the test queues through a control API:

  POST /__script    JSON array of steps (or one step), appended to a FIFO;
                    each chat request that passes validation takes one:
    {"reply": {"content": str|null, "tool_calls": [...]}}
        200 chat.completion. A tool call may be given in full OpenAI form
        or as {"name": ..., "arguments": {...} or "..."}, "id" optional.
    {"status": 429|500|503|400..., "body": str|obj, "headers": {...}}
        that status; body defaults to an OpenAI error object.
    {"raw": "text"}     200 with exactly that body (malformed replies).
    {"close": true}     drops the connection without answering.
    {"delay_ms": N}     waits first; combines with any of the above.
    {"usage": {...} or null}   with a reply: the "usage" it reports
                        (whole, or in the last chunk of a stream) instead
                        of {"prompt_tokens": 10, "completion_tokens": 5,
                        "total_tokens": 15}; null reports none.

A request with "stream": true gets its reply (a scripted "reply" or the
default one) as OpenAI streams it: 200 text/event-stream, chunked, one
"data: {chat.completion.chunk}" event a chunk (the first delta with the
role, the content in pieces, each tool call as a first piece {index, id,
type, function: {name, arguments: ""}} then fragments of its arguments,
a last chunk with the finish_reason), then, when
stream_options.include_usage, a chunk with "choices": [] and "usage",
then "data: [DONE]". Steps may add, for a streamed reply:
    "piece_chars": N    content and arguments in pieces of N characters
                        (default 4; a character is never cut in two)
    "pieces": N         ...or in N pieces each
    "chunk_delay_ms": N waits before each chunk after the first
    "stall_after": K, "stall_ms": N
                        waits N ms after the K-th chunk (a silence
                        mid-stream)
    "cut_after": K      closes the connection after K chunks: no more
                        chunks, no [DONE], no end of the chunked body
    "sse": "text"       200 text/event-stream with exactly that body
                        (malformed streams); chunk_delay_ms and cut_after
                        do not apply
stream_options is checked as OpenAI checks it: only with "stream": true,
an object, include_usage a boolean.
  POST /__reset     empties the queue and the request log.
  GET  /__requests  JSON array, one entry per chat request, valid or not:
                    {"path", "authorization", "status", "body", "peer_port"}
                    where body is the parsed JSON (or the raw text if it
                    was not); one peer_port means one kept-alive connection.

With the queue empty it answers "mock: <last user message>" (after
--delay-ms, 0 by default, which also delays steps without a delay_ms). Chat
requests go to POST .../chat/completions under any base path, so both
CHAT_MODEL_URL=http://127.0.0.1:PORT/v1 and .../PORT work.

For streaming load runs (bench/stream.pl), options shape the DEFAULT reply
when it is streamed (no step queued; scripted steps and replies that are
not streamed are unchanged):
  --stream-pieces N   the content is N pieces of a fixed width (instead
                      of "mock: <last user message>"): "w00001 ", ...
  --chunk-delay-ms N  the chunks are paced N ms apart, on a schedule
                      from the first one (a late chunk does not push the
                      next ones back): N pieces take about N x this long
  --stamp-pieces      each piece is its send time instead, "t" and 16
                      digits of microseconds since the epoch and a space
                      ("t1733200000123456 "), taken as the chunk is
                      written: a client's delay = its read time - stamp
"""
import argparse
import json
import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROLES = ("system", "user", "assistant", "tool", "developer")
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
lock = threading.Lock()
queue = []
log = []
counter = [0]


class Invalid(Exception):
    def __init__(self, message, param=None, status=400, code=None):
        super().__init__(message)
        self.message, self.param = message, param
        self.status, self.code = status, code


def error_body(message, param=None, code=None):
    return {"error": {"message": message, "type": "invalid_request_error",
                      "param": param, "code": code}}


def is_parts(content):
    """An array of content parts: objects with a type; text ones with text."""
    return isinstance(content, list) and len(content) > 0 and all(
        isinstance(p, dict) and isinstance(p.get("type"), str) and
        (p["type"] != "text" or isinstance(p.get("text"), str))
        for p in content)


def check_call(call, where):
    fn = call.get("function") if isinstance(call, dict) else None
    if not (isinstance(fn, dict) and isinstance(call.get("id"), str) and
            call.get("type") == "function" and
            isinstance(fn.get("name"), str) and
            isinstance(fn.get("arguments"), str)):
        raise Invalid("Invalid tool call: expected {id, type: 'function', "
                      "function: {name, arguments}}.", where)


def check_message(m, i):
    where = "messages.[%d]" % i
    if not isinstance(m, dict) or m.get("role") not in ROLES:
        raise Invalid("Invalid value for 'role': expected one of %s."
                      % ", ".join(ROLES), where + ".role")
    content, role = m.get("content"), m["role"]
    if role in ("system", "user", "developer"):
        if not (isinstance(content, str) or is_parts(content)):
            raise Invalid("Invalid type for '%s.content': expected a "
                          "string or an array of content parts." % where,
                          where + ".content")
    elif role == "assistant":
        calls = m.get("tool_calls")
        if calls is not None and not (isinstance(calls, list) and calls):
            raise Invalid("Invalid 'tool_calls': expected a non-empty "
                          "array.", where + ".tool_calls")
        if content is not None and not (isinstance(content, str) or
                                        is_parts(content)):
            raise Invalid("Invalid type for content.", where + ".content")
        if content is None and not calls:
            raise Invalid("Invalid value for 'content': expected a string, "
                          "got null.", where + ".content")
        for k, call in enumerate(calls or []):
            check_call(call, "%s.tool_calls.[%d]" % (where, k))
    else:
        if not isinstance(m.get("tool_call_id"), str):
            raise Invalid("Missing required parameter: '%s.tool_call_id'."
                          % where, where + ".tool_call_id")
        if not isinstance(content, str):
            raise Invalid("Invalid type for '%s.content': expected a "
                          "string." % where, where + ".content")


def unanswered_error(ids, param):
    return Invalid("An assistant message with 'tool_calls' must be followed "
                   "by tool messages responding to each 'tool_call_id'. The "
                   "following tool_call_ids did not have response messages: "
                   + ", ".join(sorted(ids)), param)


def check_order(messages):
    """Tool messages answer the assistant calls right before them, all."""
    asked, unanswered = set(), set()
    for i, m in enumerate(messages):
        if m["role"] == "tool":
            if m["tool_call_id"] not in asked:
                raise Invalid("Invalid parameter: messages with role 'tool' "
                              "must be a response to a preceeding message "
                              "with 'tool_calls'.", "messages.[%d].role" % i)
            unanswered.discard(m["tool_call_id"])
            continue
        if unanswered:
            raise unanswered_error(unanswered, "messages.[%d].role" % i)
        asked = {c["id"] for c in m.get("tool_calls") or []}
        unanswered = set(asked)
    if unanswered:
        raise unanswered_error(unanswered, "messages")


def check_tools(tools):
    if not isinstance(tools, list) or not tools:
        raise Invalid("Invalid 'tools': expected a non-empty array.", "tools")
    for k, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not (isinstance(fn, dict) and t.get("type") == "function" and
                isinstance(fn.get("name"), str) and
                TOOL_NAME.match(fn["name"]) and
                isinstance(fn.get("description", ""), str) and
                isinstance(fn.get("parameters", {}), dict)):
            raise Invalid("Invalid 'tools[%d]': expected {type: 'function',"
                          " function: {name, description?, parameters}}."
                          % k, "tools[%d]" % k)


def check_request(body):
    if not isinstance(body, dict):
        raise Invalid("We could not parse the JSON body of your request.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise Invalid("you must provide a model parameter", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Invalid("Invalid 'messages': expected a non-empty array.",
                      "messages")
    for i, m in enumerate(messages):
        check_message(m, i)
    check_order(messages)
    if "tools" in body:
        check_tools(body["tools"])
    check_stream(body)


def check_stream(body):
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise Invalid("Invalid type for 'stream': expected a boolean, but "
                      "got %s instead." % type(stream).__name__, "stream")
    if "stream_options" not in body or body["stream_options"] is None:
        return
    options = body["stream_options"]
    if not stream:
        raise Invalid("The 'stream_options' parameter is only allowed when "
                      "'stream' is enabled.", "stream_options")
    if not isinstance(options, dict):
        raise Invalid("Invalid type for 'stream_options': expected an "
                      "object.", "stream_options")
    for k, v in options.items():
        if k not in ("include_usage", "include_obfuscation"):
            raise Invalid("Unknown parameter: 'stream_options.%s'." % k,
                          "stream_options." + k)
        if not isinstance(v, bool):
            raise Invalid("Invalid type for 'stream_options.%s': expected a "
                          "boolean, but got %s instead."
                          % (k, type(v).__name__), "stream_options." + k)


def full_call(call, n):
    """A scripted tool call in OpenAI's form, filling in what is left out."""
    if "function" in call:
        return call
    args = call.get("arguments", {})
    return {"id": call.get("id", "call_mock%d_%s" % (n, call["name"])),
            "type": "function",
            "function": {"name": call["name"], "arguments":
                         args if isinstance(args, str) else json.dumps(args)}}


DEFAULT_USAGE = {"prompt_tokens": 10, "completion_tokens": 5,
                 "total_tokens": 15}


def completion(body, message, step=None):
    """A chat.completion; step's "usage" replaces the default usage
    (null: none is reported)."""
    usage = (step or {}).get("usage", DEFAULT_USAGE)
    with lock:
        counter[0] += 1
        n = counter[0]
    out = {"role": "assistant", "content": message.get("content"),
           "refusal": None}
    if message.get("tool_calls"):
        out["tool_calls"] = [full_call(c, n) for c in message["tool_calls"]]
    whole = {"id": "chatcmpl-mock%d" % n, "object": "chat.completion",
             "created": int(time.time()), "model": body["model"],
             "system_fingerprint": "fp_mock",
             "choices": [{"index": 0, "message": out, "logprobs": None,
                          "finish_reason": "tool_calls"
                          if "tool_calls" in out else "stop"}]}
    if usage is not None:
        whole["usage"] = usage
    return whole


def split(text, step):
    """text in pieces as the step asks: "pieces" of them, or pieces of
    "piece_chars" characters (Python strings: never inside a UTF-8
    sequence, as OpenAI's tokens are not)."""
    if not text:
        return []
    if step.get("pieces"):
        n = max(1, -(-len(text) // int(step["pieces"])))
    else:
        n = max(1, int(step.get("piece_chars", 4)))
    return [text[i:i + n] for i in range(0, len(text), n)]


def chunks(body, message, step):
    """The chat.completion.chunk objects of a streamed reply."""
    whole = completion(body, message, step)
    choice = whole["choices"][0]
    out = choice["message"]
    usage = (body.get("stream_options") or {}).get("include_usage")
    base = {"id": whole["id"], "object": "chat.completion.chunk",
            "created": whole["created"], "model": whole["model"],
            "system_fingerprint": whole["system_fingerprint"]}
    if usage:
        base["usage"] = None

    def chunk(delta, finish=None):
        return dict(base, choices=[{"index": 0, "delta": delta,
                                    "logprobs": None,
                                    "finish_reason": finish}])
    content = out.get("content")
    yield chunk({"role": "assistant", "refusal": None,
                 "content": "" if content is not None else None})
    for piece in split(content, step):
        yield chunk({"content": piece})
    for k, call in enumerate(out.get("tool_calls") or []):
        fn = call["function"]
        yield chunk({"tool_calls": [{"index": k, "id": call["id"],
                                     "type": "function", "function": {
                                         "name": fn["name"],
                                         "arguments": ""}}]})
        for piece in split(fn["arguments"], step):
            yield chunk({"tool_calls": [{"index": k, "function": {
                "arguments": piece}}]})
    yield chunk({}, choice["finish_reason"])
    if usage and whole.get("usage") is not None:
        yield dict(base, choices=[], usage=whole["usage"])


def default_reply(body):
    users = [m for m in body["messages"] if m["role"] == "user"]
    text = users[-1]["content"] if users else ""
    if not isinstance(text, str):
        text = " ".join(p.get("text", "") for p in text)
    return {"content": "mock: " + text}


def parsed(raw):
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive, as the service expects

    def setup(self):
        super().setup()
        # Headers and body go out in two writes; without this, Nagle and
        # the client's delayed ACK add 40 ms to every reused connection.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self):
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError):
            pass   # the client hung up: a timeout, a reply too large

    def log_message(self, *args):
        pass

    def send(self, status, body, headers=None):
        data = body if isinstance(body, bytes) else (
            body.encode() if isinstance(body, str) else
            json.dumps(body).encode())
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, str(v))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True   # the client gave up (timeout)

    def stream_start(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def stream_write(self, text):
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def stream(self, step, body, entry):
        """A streamed reply; False when the client went away."""
        entry["status"] = 200
        if not step and args.stream_pieces:
            return self.stream_paced(body)
        try:
            self.stream_start()
            if "sse" in step:
                self.stream_write(step["sse"])
                self.wfile.write(b"0\r\n\r\n")
                return True
            events = chunks(body, step.get("reply") or default_reply(body),
                            step)
            for k, c in enumerate(events):
                if k > 0:
                    time.sleep(step.get("chunk_delay_ms", 0) / 1000.0)
                if k == step.get("cut_after"):
                    self.close_connection = True
                    return True
                self.stream_write("data: %s\n\n" % json.dumps(
                    c, ensure_ascii=False))
                if k + 1 == step.get("stall_after"):
                    time.sleep(step.get("stall_ms", 0) / 1000.0)
            self.stream_write("data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            return True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True   # the client stopped or gave up
            return False

    def stream_paced(self, body):
        """The default reply as --stream-pieces, --chunk-delay-ms and
        --stamp-pieces shape it. A thousand of these run at once in a
        load run: each chunk is a template formatted with its piece,
        not a json.dumps of its own."""
        whole = completion(body, {"content": ""})
        base = ('{"id":"%s","object":"chat.completion.chunk","created":%d,'
                '"model":%s,"system_fingerprint":"fp_mock","choices":'
                '[{"index":0,"delta":' % (whole["id"], whole["created"],
                                          json.dumps(whole["model"])))
        usage = (body.get("stream_options") or {}).get("include_usage")
        if usage:
            base = base.replace('"choices":', '"usage":null,"choices":')
        head = "data: " + base + '{"content":"'
        tail = '"},"logprobs":null,"finish_reason":null}]}\n\n'
        n, step = args.stream_pieces, args.chunk_delay_ms / 1000.0
        try:
            self.stream_start()
            start = time.time()
            self.stream_write("data: " + base + '{"role":"assistant",'
                              '"refusal":null,"content":""},"logprobs":'
                              'null,"finish_reason":null}]}\n\n')
            for k in range(1, n + 2):
                wait = start + k * step - time.time()
                if wait > 0:
                    time.sleep(wait)
                if k > n:
                    break
                text = ("t%016d " % int(time.time() * 1e6)
                        if args.stamp_pieces else "w%05d " % k)
                self.stream_write(head + text + tail)
            self.stream_write("data: " + base + '{},"logprobs":null,'
                              '"finish_reason":"stop"}]}\n\n')
            if usage:
                self.stream_write("data: " + base.split('"usage"')[0] +
                                  '"choices":[],"usage":' +
                                  json.dumps(whole["usage"]) + "}\n\n")
            self.stream_write("data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            return True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return False

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def do_GET(self):
        if self.path == "/__requests":
            with lock:
                entries = list(log)
            return self.send(200, [dict(e, body=parsed(e["body"]))
                                   for e in entries])
        self.chat()

    def do_POST(self):
        if self.path == "/__reset":
            self.read_body()
            with lock:
                queue.clear()
                log.clear()
            return self.send(200, {"ok": True})
        if self.path == "/__script":
            try:
                steps = json.loads(self.read_body() or b"[]")
            except ValueError:
                return self.send(400, error_body("script: not JSON"))
            with lock:
                queue.extend(steps if isinstance(steps, list) else [steps])
                return self.send(200, {"queued": len(queue)})
        self.chat()

    def chat(self):
        raw = self.read_body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        # The log keeps the body as sent and parses it when asked: a
        # parsed body is hundreds of objects, and a load run's thousands
        # of them make Python's garbage collector stop every thread for
        # longer and longer (the slow-model bench's tail latency).
        entry = {"path": self.path, "status": None, "body": raw,
                 "authorization": self.headers.get("Authorization"),
                 "peer_port": self.client_address[1]}
        with lock:
            log.append(entry)
        try:
            self.validate(body)
        except Invalid as e:
            entry["status"] = e.status
            return self.send(e.status, error_body(e.message, e.param, e.code))
        with lock:
            step = queue.pop(0) if queue else {}
        self.play(step, body, entry)

    def validate(self, body):
        if (self.command != "POST" or
                not self.path.split("?")[0].endswith("/chat/completions")):
            raise Invalid("Invalid URL (%s %s)" % (self.command, self.path),
                          status=404)
        if args.key and self.headers.get("Authorization") != \
                "Bearer " + args.key:
            raise Invalid("Incorrect API key provided.", status=401,
                          code="invalid_api_key")
        check_request(body)

    def play(self, step, body, entry):
        time.sleep(step.get("delay_ms", args.delay_ms) / 1000.0)
        if step.get("close"):
            entry["status"] = 0
            self.close_connection = True
            return
        if "raw" in step:
            entry["status"] = 200
            return self.send(200, step["raw"])
        if "status" in step:
            entry["status"] = step["status"]
            return self.send(step["status"], step.get("body", error_body(
                "mock error %d" % step["status"])), step.get("headers"))
        if body.get("stream"):
            return self.stream(step, body, entry)
        entry["status"] = 200
        self.send(200, completion(body, step.get("reply") or
                                  default_reply(body), step))

    do_PUT = do_DELETE = do_PATCH = chat


class Server(ThreadingHTTPServer):
    # A benchmark opens a thousand connections at once; the default
    # backlog of 5 would refuse most of them.
    request_queue_size = 4096


def main():
    server = Server(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % server.server_address[1])
        os.rename(tmp, args.port_file)   # readers never see half a port
    # Never outlive the test that started us, whatever happens to it.
    timer = threading.Timer(args.max_seconds, lambda: os._exit(0))
    timer.daemon = True
    timer.start()
    server.serve_forever()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--key")
    p.add_argument("--max-seconds", type=float, default=600)
    # A slow model for load runs: every step without a delay of its own,
    # the default reply included, waits this long first.
    p.add_argument("--delay-ms", type=int, default=0)
    # A streaming model for load runs (the docstring's last paragraph).
    p.add_argument("--stream-pieces", type=int, default=0)
    p.add_argument("--chunk-delay-ms", type=float, default=0)
    p.add_argument("--stamp-pieces", action="store_true")
    args = p.parse_args()
    main()
