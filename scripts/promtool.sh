#!/usr/bin/env bash
# scripts/promtool.sh: builds Prometheus's promtool once, at a pinned
# version, into the ignored cache directory, and prints its path.
#
# The alert rules in deploy/prometheus are checked with `promtool check
# rules` and unit-tested with `promtool test rules` (deploy/prometheus's Go
# test). promtool comes from the github.com/prometheus/prometheus module
# through the module proxy, built by `go install PKG@VERSION`, which never
# touches this project's go.mod: the Prometheus server's dependencies have
# no place in it. A cold build takes several minutes (about 1.5 with the
# modules already downloaded); later calls find the binary and return at
# once.
#
#   scripts/promtool.sh            # build if needed, print the path
#   "$(scripts/promtool.sh)" --version
#
# SC_CACHE_DIR moves the cache (default: .cache in the repository).
set -euo pipefail
export GOTOOLCHAIN=auto

cd "$(dirname "$0")/.."

# The module version of a Prometheus 3 release (its Go module is tagged v0.3xx.y).
PROMETHEUS_VERSION=v0.316.0

bin=${SC_CACHE_DIR:-$PWD/.cache}/bin
out="$bin/promtool-$PROMETHEUS_VERSION"
if [ ! -x "$out" ]; then
	mkdir -p "$bin"
	echo "promtool.sh: building promtool from github.com/prometheus/prometheus@$PROMETHEUS_VERSION (a cold build takes several minutes)" >&2
	tmpbin=$(mktemp -d)
	trap 'rm -rf "$tmpbin"' EXIT
	# Outside any module's requirements: GOFLAGS=-mod=mod is ignored by
	# go install PKG@VERSION, and the work tree's go.mod is never read.
	GOBIN=$tmpbin GOFLAGS= go install "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
	mv "$tmpbin/promtool" "$out"
fi
echo "$out"
