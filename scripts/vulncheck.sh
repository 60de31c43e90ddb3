#!/usr/bin/env bash
# Runs govulncheck against an offline vulnerability database built from the
# golang.org/x/vulndb module at a pinned version, so the check needs nothing
# but the Go module proxy (the default online database is not reachable in CI)
# and gives the same answer until the pin is moved on purpose.
#
# Usage: scripts/vulncheck.sh            (from anywhere in the repository)
# Exit status: 0 no reachable vulnerability, non-zero otherwise.
set -euo pipefail

cd "$(dirname "$0")/.."
# govulncheck must be built by the toolchain that analyses the code, and that
# is go.mod's go line, not the machine's (possibly older, vulnerable) Go.
GOTOOLCHAIN="go$(sed -n 's/^go //p' go.mod)"
export GOTOOLCHAIN

VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018 # golang.org/x/vulndb, 2026-11-05
GOVULNCHECK_VERSION=v1.9.0

cache=${SC_CACHE_DIR:-$PWD/.cache}/vulndb-$VULNDB_VERSION
bin=${SC_CACHE_DIR:-$PWD/.cache}/bin
mkdir -p "$bin"

if [ ! -x "$bin/govulncheck-$GOVULNCHECK_VERSION-$GOTOOLCHAIN" ]; then
  echo "vulncheck: building govulncheck $GOVULNCHECK_VERSION with $GOTOOLCHAIN" >&2
  tmpbin=$(mktemp -d)
  GOBIN=$tmpbin go install "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION"
  mv "$tmpbin/govulncheck" "$bin/govulncheck-$GOVULNCHECK_VERSION-$GOTOOLCHAIN"
  rmdir "$tmpbin"
fi

if [ ! -f "$cache/db/index/db.json" ]; then
  echo "vulncheck: generating the vulnerability database from golang.org/x/vulndb@$VULNDB_VERSION" >&2
  rm -rf "$cache"
  mkdir -p "$cache"
  info=$(go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION")
  moddir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$info")
  modtime=$(sed -n 's/^[[:space:]]*"Time": "\(.*\)",\{0,1\}$/\1/p' < "$(sed -n 's/^[[:space:]]*"Info": "\(.*\)",$/\1/p' <<<"$info")")
  cp -r "$moddir" "$cache/src"
  chmod -R u+w "$cache/src"
  # gendb reads the reports from a git repository and dates entries by its
  # commits: one commit stamped with the module's own time keeps the output
  # reproducible.
  (
    cd "$cache/src"
    git init -q
    git add -A
    GIT_AUTHOR_DATE=$modtime GIT_COMMITTER_DATE=$modtime \
      git -c user.name=vulndb -c user.email=vulndb@localhost commit -qm "vulndb $VULNDB_VERSION"
    go build -o "$cache/gendb" ./cmd/gendb
    "$cache/gendb" -repo . -out "$cache/db.tmp"
  )
  mv "$cache/db.tmp" "$cache/db"
  rm -rf "$cache/src"
fi

echo "vulncheck: govulncheck $GOVULNCHECK_VERSION, database golang.org/x/vulndb@$VULNDB_VERSION" >&2
"$bin/govulncheck-$GOVULNCHECK_VERSION-$GOTOOLCHAIN" -db "file://$cache/db" ./...
