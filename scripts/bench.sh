#!/usr/bin/env bash
# scripts/bench.sh: the benchmark anyone can rerun (issue 6).
#
# Builds sc-server, sc-client, sc-cert, the reference server
# (internal/cmd/refserver) and the matrix driver (internal/cmd/benchsuite),
# makes P-256, RSA-4096 and Ed25519 certificate layouts with sc-cert, runs the Go
# benchmarks of the codec and the server path, then runs every scenario
# against sc-server with each engine and against the reference server —
# a fresh server process per run, medians of --runs runs, the server's CPU
# seconds and memory from /proc — and writes docs/BENCHMARKS.md.
#
# The mutual TLS scenarios (IDs with "mtls", issue 14) use a bench identity
# the suite makes for the run (a P-256 key and an allow list holding its
# pin): sc-client bench --identity presents it to sc-server --client-auth
# require --client-allow and to refserver --client-allow (crypto/tls's
# RequireAnyClientCert with the same allow list check). Their targets:
#
#   scripts/bench.sh --runs 5 --only 'mtls-|^hs-full-p256-tls13$|^idle-15000x64B-tls13$' --out /tmp/mtls.md
#
# Server and load generator are separate processes on 127.0.0.1; every run
# is bounded in time. A full run takes about half an hour on 2 cores: run
# it when the machine is quiet (check `uptime`).
#
#   scripts/bench.sh                 # full run, writes docs/BENCHMARKS.md
#   scripts/bench.sh --smoke         # every mode once, seconds; checks the JSON
#   scripts/bench.sh --runs 1 --duration 3s --only 'hs-|echo' --out /tmp/b.md
#   scripts/bench.sh --engines goroutine
#   scripts/bench.sh --scaling       # the scaling run alone (about 10 minutes), see below
#   scripts/bench.sh --token         # keys in a PKCS#11 token (SoftHSM2), about 2 minutes, see below
#
# The scaling run (issue 18) is sc-client bench scale against each engine
# and the reference server, a fresh server each: connections opened in
# steps to 1,000, 2,000, 5,000, 10,000, 15,000 and 19,000 (--points), each
# sending one 64-byte ECHO a second, every point measured for --duration
# (20 s unless given). It writes docs/bench/scaling-SERVER.json, the chart
# docs/bench/scaling.svg and the scaling section of docs/BENCHMARKS.md,
# leaving the rest of the document alone (--out elsewhere for a trial:
# the JSON and chart then go beside it). A full run also writes
# docs/bench/handshakes.svg, the chart of the handshake rates per key type
# and engine. Both need a quiet machine.
#
# The token run (issue 17) makes a SoftHSM2 token in the work directory,
# imports the P-256 layout's server key into it (softhsm2-util --import),
# and measures full TLS 1.3 handshakes against sc-server serving that key
# from server.key and from the token (server.uri), interleaved, --runs
# runs of --duration each (5 and 10s unless given), per engine. It writes
# the "Keys in a PKCS#11 token" section of docs/BENCHMARKS.md (the token
# block) and leaves the rest alone. Needs softhsm2 (scripts/deps.sh).
#
# Linux only (the server figures come from /proc).
set -euo pipefail
export GOTOOLCHAIN=auto
# The benchmark measures the flags it passes: no configuration file counts.
export SC_SERVER_CONFIG= SC_CLIENT_HOSTS_FILE=

cd "$(dirname "$0")/.."

smoke=0
runs=3
duration=""
engines=""
only=""
out=docs/BENCHMARKS.md
keep=""
scaling=""
token=""
runs_given=""
points=1000,2000,5000,10000,15000,19000
note=""
while [ $# -gt 0 ]; do
	case "$1" in
	--smoke) smoke=1 ;;
	--scaling) scaling=1 ;;
	--token) token=1 ;;
	--points) points=$2; shift ;;  # the scaling run's connection counts
	--note) note=$2; shift ;;      # printed with the scaling results (say, "taken on a loaded machine")
	--runs) runs=$2; runs_given=1; shift ;;
	--duration) duration=$2; shift ;;
	--engines) engines=$2; shift ;;
	--only) only=$2; shift ;;
	--out) out=$2; shift ;;
	--keep) keep=$2; shift ;;  # keep every run's JSON and logs in this DIR
	-h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

if [ "$(uname -s)" != Linux ]; then
	echo "bench.sh: the server figures come from Linux's /proc; this is $(uname -s)" >&2
	exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sc-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
bin=$work/bin

echo "bench.sh: building into $bin" >&2
go build -o "$bin/" ./cmd/sc-server ./cmd/sc-cert ./internal/cmd/refserver ./internal/cmd/benchsuite ./internal/cmd/benchdoc

# The load generator is sc-client bench; a tree whose sc-client does not
# have it yet uses the same command built into the suite.
bench_cmd="$bin/sc-client bench"
if ! { go build -o "$bin/" ./cmd/sc-client 2>/dev/null && "$bin/sc-client" bench --help >/dev/null 2>&1; }; then
	echo "bench.sh: this sc-client has no bench command yet; using the same command from internal/cmd/benchsuite" >&2
	bench_cmd="$bin/benchsuite bench"
fi

# The engines this sc-server has, from its --help ("connection ENGINE: a, b").
if [ -z "$engines" ]; then
	engines=$("$bin/sc-server" --help 2>&1 | sed -n 's/.*connection ENGINE: \([a-z0-9, ]*\).*/\1/p' | tr -d ' ')
	engines=${engines:-goroutine}
fi
echo "bench.sh: engines: $engines" >&2

certs() { # certs DIR [sc-cert init flags...]
	local dir=$1; shift
	"$bin/sc-cert" init --dir "$dir" "$@" >/dev/null
	"$bin/sc-cert" fingerprint "$dir/server.crt" >"$dir/server.pin"
}
certs "$work/certs-p256"
results=${keep:-$work/results}

if [ "$smoke" = 1 ]; then
	exec_suite=("$bin/benchsuite" -smoke -bin "$bin" -bench-cmd "$bench_cmd" -engines "$engines"
		-certs-p256 "$work/certs-p256" -results "$results")
	[ -n "$only" ] && exec_suite+=(-only "$only")
	"${exec_suite[@]}"
	# The charts, from the smoke run's scaling reports: the pipeline
	# works end to end.
	if compgen -G "$results/scaling-*.json" >/dev/null; then
		mkdir -p "$work/charts"
		cp "$results"/scaling-*.json "$work/charts/"
		"$bin/benchdoc" scaling --dir "$work/charts"
	fi
	exit 0
fi

if [ -n "$scaling" ]; then
	duration=${duration:-20s}
	echo "bench.sh: the scaling run: points $points, each measured $duration; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
	"$bin/benchsuite" -bin "$bin" -bench-cmd "$bench_cmd" -engines "$engines" -certs-p256 "$work/certs-p256" \
		-scaling "$points" -duration "$duration" -results "$results"
	docdir=$(dirname "$out")/bench
	mkdir -p "$docdir"
	cp "$results"/scaling-*.json "$docdir/"
	"$bin/benchdoc" scaling --dir "$docdir" --doc "$out" --note "$note" \
		--command "scripts/bench.sh --scaling --points $points --duration $duration"
	echo "bench.sh: wrote $docdir/scaling.svg and the scaling section of $out" >&2
	exit 0
fi

if [ -n "$token" ]; then
	module=""
	for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/lib64/pkcs11/libsofthsm2.so; do
		[ -f "$m" ] && module=$m && break
	done
	if [ -z "$module" ] || ! command -v softhsm2-util >/dev/null; then
		echo "bench.sh: the token run needs SoftHSM2 (scripts/deps.sh installs it)" >&2
		exit 1
	fi
	duration=${duration:-10s}
	[ -n "$runs_given" ] || runs=5
	# A token of this run's own, holding the P-256 layout's server key.
	mkdir -p "$work/softhsm/tokens" "$work/certs-token"
	export SOFTHSM2_CONF=$work/softhsm/softhsm2.conf
	printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$work/softhsm/tokens" >"$SOFTHSM2_CONF"
	(umask 077 && echo 123456 >"$work/softhsm/pin")
	softhsm2-util --init-token --free --label sc-bench --pin 123456 --so-pin 12345678 >/dev/null
	softhsm2-util --import "$work/certs-p256/server.key" --token sc-bench --label sc-server --id 02 --pin 123456 >/dev/null
	(umask 077 && echo "pkcs11:module-path=$module;token=sc-bench;id=%02;object=sc-server?pin-source=$work/softhsm/pin" >"$work/certs-token/server.uri")
	# The token holds the same key: the same pin.
	if [ "$("$bin/sc-cert" fingerprint "$work/certs-token/server.uri")" != "$(cat "$work/certs-p256/server.pin")" ]; then
		echo "bench.sh: the key in the token is not the layout's server key" >&2
		exit 1
	fi
	revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
	if ! git diff --quiet HEAD -- 2>/dev/null; then
		revision="$revision (with uncommitted changes in the working tree)"
	fi
	echo "bench.sh: the token run: $runs runs of $duration per server; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
	"$bin/benchsuite" -bin "$bin" -bench-cmd "$bench_cmd" -engines "$engines" -certs-p256 "$work/certs-p256" \
		-token "$work/certs-token" -runs "$runs" -duration "$duration" -results "$results" -out "$out" \
		-note "$note" -revision "$revision" -go-version "$(go version)"
	echo "bench.sh: wrote the token section of $out" >&2
	exit 0
fi

duration=${duration:-10s}
echo "bench.sh: making an RSA-4096 layout (key generation takes a few seconds)" >&2
certs "$work/certs-rsa4096" --key-type rsa-4096 --ca-key-type ecdsa-p256
certs "$work/certs-ed25519" --key-type ed25519 --ca-key-type ecdsa-p256

echo "bench.sh: load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "bench.sh: Go benchmarks of the codec and the server path" >&2
# Only the result lines: the server benchmarks also log through t.Log.
go test -run '^$' -bench . -benchmem ./internal/proto ./internal/server |
	grep -E '^(Benchmark|goos|goarch|pkg|cpu)' >"$work/gobench.txt"

revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git diff --quiet HEAD -- 2>/dev/null; then
	revision="$revision (with uncommitted changes in the working tree)"
fi
suite=("$bin/benchsuite" -bin "$bin" -bench-cmd "$bench_cmd" -engines "$engines"
	-certs-p256 "$work/certs-p256" -certs-rsa4096 "$work/certs-rsa4096" -certs-ed25519 "$work/certs-ed25519"
	-runs "$runs" -duration "$duration" -results "$results" -out "$out"
	-go-bench "$work/gobench.txt" -revision "$revision" -go-version "$(go version)")
[ -n "$only" ] && suite+=(-only "$only")
"${suite[@]}"
if [ -f "$results/handshakes.json" ]; then
	docdir=$(dirname "$out")/bench
	mkdir -p "$docdir"
	cp "$results/handshakes.json" "$docdir/handshakes.json"
	"$bin/benchdoc" handshakes --in "$docdir/handshakes.json" --svg "$docdir/handshakes.svg" --doc "$out"
fi
echo "bench.sh: wrote $out" >&2
