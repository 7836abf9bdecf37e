# Makefile: builds chat.fcgi and its tests; runs, tests and benchmarks the
# whole service. `make` needs the -dev packages; `make run` and `make test`
# install whatever is missing first (scripts/deps).

CC	?= cc
PKGS	 = libcjson fcgi libpq libcurl libcrypto
OPT	?= -O2 -g
CFLAGS	+= $(OPT) -std=c11 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L \
	   -pthread -Wall -Wextra -Werror -Wshadow -Wformat=2 \
	   $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS	+= $(shell pkg-config --libs $(PKGS) 2>/dev/null) -pthread

LIB_OBJS = lib/accept.o lib/buf.o lib/err.o lib/log.o lib/text.o lib/url.o lib/config.o \
	   lib/jwk.o lib/fetch.o lib/keyring.o lib/auth.o lib/http.o lib/history.o lib/reply.o lib/transcript.o \
	   lib/openai.o lib/remote.o lib/offline.o lib/model.o lib/tools.o \
	   lib/failover.o lib/dbconn.o lib/db.o lib/bounds.o lib/turn.o lib/uistream.o lib/live.o lib/browse.o \
	   lib/chatreq.o lib/usage.o lib/mcp.o
LIB_HDRS = $(wildcard lib/*.h)

# C unit tests: t/unit/NAME.c prints TAP and becomes t/unit/NAME.t,
# which prove runs directly.
UNIT_SRCS = $(wildcard t/unit/*.c)
UNIT_TESTS = $(UNIT_SRCS:.c=.t)

# The same worker built with AddressSanitizer and UndefinedBehaviorSanitizer;
# `make test` runs the integration tests against it too.
SAN_FLAGS = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
	    -fno-sanitize-recover=all
TSAN_FLAGS = -O1 -g -fsanitize=thread
# Run again with four threads a worker against the ThreadSanitizer build.
TSAN_TESTS = t/10-chat.t t/50-model.t t/70-idempotency.t t/75-concurrent.t \
	     t/88-load-faults.t t/89-fastcgi-connection.t t/90-graceful-stop.t \
	     t/39-stream-resume.t
LIB_SRCS = $(LIB_OBJS:.o=.c)
# Every integration test but those that bring their own instrumentation,
# t/41-stream-pings.t: a minute of waiting for a silent model, whose
# code path the other stream tests take too (t/37's model silent for 2 s
# idles the same loop) but for the ping's fixed write; the chat page's,
# which test the page, not the workers (the browser's would add its half
# minute again); t/83-two-hosts.t, which tests nginx's choice of worker
# host, not the workers, whose load and faults t/88-load-faults.t gives
# the sanitizers; and t/84-failover.t, half a minute of a PostgreSQL
# cluster failing over, whose worker code paths t/82 runs one by one.
# Nor the checks against software no one here wrote (Better Auth's
# tokens, the MCP SDK, a third-party model mock, the AI SDK's stream
# reader): Node takes most of their time, and the worker's code they
# reach t/33, t/62, t/50 and t/36 give the sanitizers already. Nor
# t/34-jwks-startup.t, half a minute of multiwatch giving up on workers
# that refuse to start, whose parsing of key sets the JWKS fuzzer
# (t/95) and t/33 put under ASan.
SAN_TESTS = $(filter-out t/91-valgrind.t t/92-unit-valgrind.t t/95-fuzz.t \
	    t/41-stream-pings.t t/65-browser.t t/66-page-units.t \
	    t/83-two-hosts.t t/84-failover.t t/32-jwks-better-auth.t \
	    t/34-jwks-startup.t t/35-stream-reader.t \
	    t/52-third-party-model.t t/63-mcp-sdk.t, $(wildcard t/*.t))

all: chat.fcgi

chat.fcgi: chat.fcgi.o lib/libchat.a
	$(CC) $(LDFLAGS) -o $@ chat.fcgi.o lib/libchat.a $(LDLIBS)

lib/libchat.a: $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $(LIB_OBJS)

%.o: %.c $(LIB_HDRS)
	$(CC) $(CFLAGS) -Ilib -c -o $@ $<

t/unit/%.t: t/unit/%.c lib/libchat.a $(LIB_HDRS)
	$(CC) $(CFLAGS) -Ilib -o $@ $< lib/libchat.a $(LDLIBS)

chat.fcgi.asan: chat.fcgi.c $(LIB_SRCS) $(LIB_HDRS)
	$(CC) $(CFLAGS) $(SAN_FLAGS) -Ilib -o $@ chat.fcgi.c $(LIB_SRCS) \
	    $(LDLIBS)

# ThreadSanitizer, for workers with several threads (CHAT_WORKER_THREADS):
# it sees our code's accesses, not those inside the libraries.
chat.fcgi.tsan: chat.fcgi.c $(LIB_SRCS) $(LIB_HDRS)
	$(CC) $(CFLAGS) $(TSAN_FLAGS) -Ilib -o $@ chat.fcgi.c $(LIB_SRCS) \
	    $(LDLIBS)

units: $(UNIT_TESTS)

deps:
	@scripts/deps

# The whole suite: unit tests, then integration tests against a throwaway
# PostgreSQL, real workers, real nginx and the mock model in t/.
test: deps
	$(MAKE) all units chat.fcgi.asan chat.fcgi.tsan
	prove --timer -r t/
	CHAT_FCGI=./chat.fcgi.asan prove --timer $(SAN_TESTS)
	CHAT_FCGI=./chat.fcgi.tsan CHAT_WORKER_THREADS=4 prove --timer \
	    $(TSAN_TESTS)

# Only the sanitizer pass, on an already built tree.
test-asan: chat.fcgi.asan
	CHAT_FCGI=./chat.fcgi.asan prove $(SAN_TESTS)

test-tsan: chat.fcgi.tsan
	CHAT_FCGI=./chat.fcgi.tsan CHAT_WORKER_THREADS=4 prove $(TSAN_TESTS)

run: deps
	$(MAKE) all
	scripts/run

# Benchmarks on the real stack (stock durability, the built-in model, a
# mock for the slow one), never part of make test; figures go to
# bench/results/ so runs can be compared.
bench: deps
	$(MAKE) all bench/stream-mock bench/stream-read
	perl bench/perf.pl
	perl bench/instructions.pl
	perl bench/mcp.pl
	perl bench/history-length.pl 300
	perl bench/rss.pl 20000
	perl bench/slow-model.pl 1000 30
	perl bench/stream.pl 1000 30

# bench/stream.pl's model (t/mock_model.py's streamed reply) and its
# latency run's clients, each one thread on epoll, so that the benchmark
# measures the service and not the mock or the client.
bench/stream-mock bench/stream-read: %: %.c
	$(CC) $(OPT) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -o $@ $<

# The libFuzzer harnesses in fuzz/ (clang, libclang-rt-dev), FUZZ_SECONDS
# each; t/95-fuzz.t runs them for a few seconds in every make test.
FUZZ_SECONDS ?= 300

fuzz: deps
	fuzz/run $(FUZZ_SECONDS)

clean:
	rm -f chat.fcgi chat.fcgi.asan chat.fcgi.tsan *.o lib/*.o lib/libchat.a t/unit/*.t \
	    bench/stream-mock bench/stream-read
	rm -rf t/tmp

.PHONY: all units deps test test-asan test-tsan bench fuzz run clean
