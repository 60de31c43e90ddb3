#!/usr/bin/env bash
# scripts/soak.sh: an hour under a game's load with a rotation every minute
# (issue 18).
#
# Builds sc-server, sc-cert and the soak driver (internal/cmd/soak) without
# the race detector, then for each engine runs a real sc-server on
# 127.0.0.1 under a game-like load: --conns TLS connections each sending a
# heartbeat ECHO every 10 s, 20 connections in ping-pong paced to 100 ECHOs
# a second each, 10 new connections a second (one ECHO each), and a
# certificate rotation every --rotate-every, cycling a keep-key sc-cert
# rotate, rotate --promote-next, a Kubernetes-style ..data swap and SIGHUP.
# The clients trust like players: trust on first use, learning the next key
# through KEYS, and one in five trusting the local CA; a key change waits
# until every player has learned the new key, so any refused key fails the
# run.
#
# Every 10 s it records the server's RSS, heap in use, goroutines, open
# descriptors and GC pauses, and the clients' heartbeat latency (p50, p99,
# max), errors and reconnects, in OUT/soak-ENGINE.csv, with the run's
# summary and verdict in OUT/soak-ENGINE.json, the server's log in
# OUT/server-ENGINE.log and the chart in OUT/soak-ENGINE.svg.
#
# It fails if any handshake or request fails or a client is locked out;
# if RSS at the end exceeds RSS at the start of the steady state (minute 5;
# second 30 in a run under 10 minutes, or later, once the server has
# collected garbage 3 times under the full load: a Go heap reaches its
# working size only then, see SteadyGCCycles in internal/bench/soak) by
# more than 10% (15% in a short run); if open descriptors at the end differ from then by more than 50, or
# goroutines by more than 200 (epoll) / 1% of the held connections + the new
# ones a second + 8 (goroutine);
# or if the heartbeat ECHOs' p99 exceeds 50 ms in any 10 s window.
#
#   scripts/soak.sh                                   # 60 minutes, 15,000 connections, epoll
#   scripts/soak.sh --engine goroutine --record       # and write docs/bench/ and docs/BENCHMARKS.md
#   scripts/soak.sh --minutes 2 --conns 2000 --engine epoll,goroutine --rotate-every 15s
#                                                     # the short run of scripts/test.sh (~5 minutes)
#
# A full run needs a quiet machine: the server and its clients share its
# cores, and the latency criterion is about the server, not its neighbours.
# Every process it starts is stopped by its PID. Linux only (/proc).
set -euo pipefail
export GOTOOLCHAIN=auto

cd "$(dirname "$0")/.."

minutes=60
conns=15000
engines=epoll
rotate=1m
out=""
record=0
note=""
while [ $# -gt 0 ]; do
	case "$1" in
	--minutes) minutes=$2; shift ;;
	--conns) conns=$2; shift ;;
	--engine|--engines) engines=$2; shift ;;  # one engine, or a comma-separated list
	--rotate-every) rotate=$2; shift ;;
	--out) out=$2; shift ;;                    # results directory (default .cache/soak/DATE)
	--record) record=1 ;;                      # copy the results to docs/bench and rewrite the soak section of docs/BENCHMARKS.md
	--note) note=$2; shift ;;                  # printed with the recorded results (say, "taken on a loaded machine")
	-h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "soak.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

if [ "$(uname -s)" != Linux ]; then
	echo "soak.sh: the server's figures come from Linux's /proc; this is $(uname -s)" >&2
	exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sc-soak.XXXXXX")
driver=""
cleanup() {
	if [ -n "$driver" ] && kill -0 "$driver" 2>/dev/null; then
		# The driver stops the server it started, by its PID, on SIGTERM.
		kill -TERM "$driver" 2>/dev/null || true
		wait "$driver" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
bin=$work/bin

echo "soak.sh: building into $bin (without the race detector)" >&2
go build -o "$bin/" ./cmd/sc-server ./cmd/sc-cert ./internal/cmd/soak ./internal/cmd/benchdoc

out=${out:-.cache/soak/$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$out"
echo "soak.sh: results in $out; load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs" >&2

status=0
for engine in ${engines//,/ }; do
	echo "soak.sh: $engine engine: $minutes minutes, $conns connections, a rotation every $rotate" >&2
	args=(--bin "$bin" --dir "$work/run-$engine" --engine "$engine" --minutes "$minutes" --conns "$conns"
		--rotate-every "$rotate" --csv "$out/soak-$engine.csv" --json "$out/soak-$engine.json")
	[ -n "$note" ] && args+=(--note "$note")
	"$bin/soak" "${args[@]}" &
	driver=$!
	if ! wait "$driver"; then
		status=1
		echo "soak.sh: the $engine engine's soak FAILED (see above, and $out/server-$engine.log)" >&2
	fi
	driver=""
	cp "$work/run-$engine/server.log" "$out/server-$engine.log" 2>/dev/null || true
done

# The charts, from the CSV and JSON just written.
"$bin/benchdoc" soak --dir "$out"

if [ "$record" = 1 ]; then
	mkdir -p docs/bench
	for engine in ${engines//,/ }; do
		cp "$out/soak-$engine.csv" "$out/soak-$engine.json" "$out/soak-$engine.svg" docs/bench/
	done
	"$bin/benchdoc" soak --dir docs/bench --doc docs/BENCHMARKS.md
fi
exit $status
