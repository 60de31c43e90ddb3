#!/usr/bin/env bash
# Runs every native Go fuzz target in the repository for a bounded time,
# one target at a time, on top of its committed seed corpus
# (PKG/testdata/fuzz/FuzzXxx), and stops at the first failure, printing the
# reproducer the fuzzer wrote and the command that replays it (issue 7).
#
# Targets are found by name (func FuzzXxx in a _test.go file), so a new
# target is fuzzed without editing this script — but it must come with a
# committed seed corpus, or the script fails before fuzzing anything.
#
# Usage: scripts/fuzz.sh [REGEXP]     (from anywhere in the repository)
#   REGEXP     fuzz only the targets whose name matches (grep -E), e.g. 'ParsePin'
#   FUZZTIME   how long each target runs (go test -fuzztime), default 30s;
#              e.g. FUZZTIME=5s scripts/fuzz.sh for a quick pass
#   FUZZMINIMIZETIME  the longest time spent shrinking one input (go test
#              -fuzzminimizetime), default 5s: Go's default, 60s, lets the
#              minimisation of one new "interesting" input take the whole
#              run of a target (seen here: 2,858 executions in 30 s)
# Exit status: 0 no failure; 1 a target failed (a crash, a broken property,
# or a test that does not build) or has no seed corpus.
set -euo pipefail

cd "$(dirname "$0")/.."
export GOTOOLCHAIN=auto

FUZZTIME=${FUZZTIME:-30s}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-5s}
filter=${1:-}

# Every "func FuzzXxx(" in a test file, as "package-dir target".
targets=$(git ls-files '*_test.go' 2>/dev/null | xargs grep -lE '^func Fuzz[A-Za-z0-9_]+\(' |
  while read -r f; do
    sed -nE 's/^func (Fuzz[A-Za-z0-9_]+)\(.*/\1/p' "$f" | sed "s|^|$(dirname "$f") |"
  done | sort)
if [ -n "$filter" ]; then
  targets=$(grep -E " [^ ]*($filter)[^ ]*\$" <<<"$targets" || true)
fi
if [ -z "$targets" ]; then
  echo "fuzz: no fuzz target matches ${filter:-anything}" >&2
  exit 1
fi

# A target without committed seeds starts from its f.Add calls alone, and a
# later CI run would not replay what earlier ones learned: require them.
missing=0
while read -r dir name; do
  if [ -z "$(git ls-files "$dir/testdata/fuzz/$name")" ]; then
    echo "fuzz: $dir: $name has no committed seed corpus in $dir/testdata/fuzz/$name" >&2
    missing=1
  fi
done <<<"$targets"
[ "$missing" -eq 0 ] || exit 1

n=$(wc -l <<<"$targets")
echo "fuzz: $n targets, $FUZZTIME each" >&2
start=$SECONDS
log=$(mktemp)
trap 'rm -f "$log"' EXIT
while read -r dir name; do
  echo "fuzz: $dir $name" >&2
  # -run '^$' skips the package's other tests; the seed corpus still runs
  # first, as part of fuzzing.
  if ! go test -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" "./$dir" >"$log" 2>&1; then
    cat "$log" >&2
    # "Failing input written to testdata/fuzz/FuzzXxx/0123abcd" (relative
    # to the package directory).
    input=$(sed -nE 's/.*Failing input written to (testdata\/fuzz\/[^ ]+).*/\1/p' "$log" | tail -1)
    # A committed seed that fails: "failure while testing seed corpus
    # entry: FuzzXxx/name" (an f.Add seed has a generated name: no file).
    if [ -z "$input" ]; then
      entry=$(sed -nE 's/.*failure while testing seed corpus entry: ([^ ]+).*/\1/p' "$log" | tail -1)
      if [ -n "$entry" ] && [ -f "$dir/testdata/fuzz/$entry" ]; then
        input=testdata/fuzz/$entry
      fi
    fi
    if [ -n "$input" ]; then
      echo >&2
      echo "fuzz: FAILED: $name in ./$dir" >&2
      echo "fuzz: reproducer: $dir/$input" >&2
      echo "fuzz: replay it:  go test -run '^$name/$(basename "$input")\$' ./$dir" >&2
      echo "fuzz: commit the reproducer with the fix, so every run replays it" >&2
    else
      echo "fuzz: FAILED: $name in ./$dir (no reproducer written: see the output above)" >&2
    fi
    exit 1
  fi
  # The fuzzer's last progress line: time, executions, corpus size.
  grep -E '^fuzz: elapsed' "$log" | tail -1 | sed 's/^/  /' >&2 || true
done <<<"$targets"
echo "fuzz: $n targets passed in $((SECONDS - start))s" >&2
