#!/usr/bin/env bash
# Runs everything the project checks, in the order a failure is cheapest to
# find: formatting, vet, the race-enabled test suite (unit, integration and
# interop tests, the TLS scanners among them), zlint, the vulnerability
# scan, a bounded fuzzing run (FUZZTIME per target, default 30s), the .deb
# and .rpm packages built and checked (lintian, rpm), and last, as root
# only, the real install: dpkg -i, the installed programs run, dpkg --purge.
# `make test` and CI (.ci/run) call this script; it needs only Go and the
# Debian packages scripts/deps.sh installs.
set -euo pipefail

cd "$(dirname "$0")/.."
# go.mod asks for go 1.27.3: the machine's own Go may be older (and has known
# crypto/tls vulnerabilities); auto lets the go command fetch the right one.
export GOTOOLCHAIN=auto

step() { printf '\n==> %s\n' "$*" >&2; }
start=$SECONDS

step "go version"
go version

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change these files:" >&2
  echo "$unformatted" >&2
  exit 1
fi

step "go mod tidy"
# go.mod and go.sum must be what go mod tidy makes: a dependency marked
# indirect though imported, or one left over, fails here.
if ! go mod tidy -diff; then
  echo "go mod tidy would change go.mod or go.sum (above): run go mod tidy and commit the result" >&2
  exit 1
fi

step "go vet"
go vet ./...

step "cross-build for every platform the seed planned"
# Nothing outside _linux/_unix files may assume epoll or Unix signals.
for platform in linux/amd64 linux/arm64 darwin/arm64 windows/amd64; do
  GOOS=${platform%/*} GOARCH=${platform#*/} go build -o /dev/null ./...
  GOOS=${platform%/*} GOARCH=${platform#*/} go vet ./...
  echo "  $platform ok" >&2
done

step "promtool, for the alert rules' tests (pinned; built once into .cache)"
# A cold build takes several minutes; later runs find the binary.
scripts/promtool.sh >/dev/null

step "go test -race"
go test -race -timeout 30m ./...

step "load tests without the race detector (it slows TLS handshakes ~15x)"
# Under -race the connection-count tests scale themselves down; the design
# numbers (5,000 concurrent TLS connections) are checked here.
go test -count=1 -run 'TestManyConnections' ./internal/server/
# A 100,000-entry allow list reloaded under handshakes, and 20 of 200
# players revoked at once, at full size and with their 1 s bounds (issue 14).
go test -count=1 -run 'TestAllowListReloadUnderHandshakes|TestRevokeTwentyOfTwoHundred' ./internal/cli/servercmd/

step "benchmark smoke: every bench mode once against each engine, seconds"
scripts/bench.sh --smoke

step "short soak: 2 minutes, 2,000 connections, a rotation every 15 s, each engine"
# The hour-long soak of docs/BENCHMARKS.md, scaled down (issue 18): a
# game-like load on a real sc-server while every kind of rotation happens,
# judged by the same criteria. About 5 minutes in all.
scripts/soak.sh --minutes 2 --conns 2000 --engine epoll,goroutine --rotate-every 15s

step "zlint on every kind of certificate sc-cert makes"
scripts/zlint.sh

step "govulncheck (offline database)"
scripts/vulncheck.sh

step "fuzzing: every fuzz target for ${FUZZTIME:-30s} on its committed seed corpus"
# About 32 s a target, 10 targets: ~5.5 minutes. The testssl, sslscan,
# toolkit-fault and key-leak tests (issue 7) ran above, in go test.
scripts/fuzz.sh

step "packages: .deb and .rpm for amd64 and arm64, checked with dpkg-deb, lintian and rpm"
dist=$(mktemp -d "${TMPDIR:-/tmp}/sc-dist.XXXXXX")
trap 'rm -rf "$dist"' EXIT
scripts/package.sh --out "$dist" >/dev/null
scripts/package-test.sh "$dist"

# Last, and serially after everything else: it changes the machine (and
# puts it back). Root only; it skips otherwise (and fails under CI=true).
step "the real install: dpkg -i, the installed programs as an unprivileged user, dpkg --purge"
scripts/install-test.sh "$dist"

step "all checks passed in $((SECONDS - start))s"
