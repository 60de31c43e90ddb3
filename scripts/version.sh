#!/usr/bin/env bash
# Prints the version to build as, from git describe, in a form that is a
# valid Debian and RPM package version and sorts the way releases do:
#
#   on a tag v1.2.3                      1.2.3
#   3 commits after it, at abc1234       1.2.3+git3.abc1234
#   no tag in the history (a fresh repo) 0.0.0+git20261207.abc1234 (commit date, short hash)
#   uncommitted changes                  ... with .dirty appended
#   not a git checkout (a tarball)       $SC_VERSION if set, else 0.0.0+unknown
#
# make build and make package pass it to the linker
# (-X github.com/spacecaptain/spacecaptain/internal/cli.version=...), so
# that every binary's --version is the package's version.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${SC_VERSION:-}" ]; then
  echo "$SC_VERSION"
  exit 0
fi
if ! git rev-parse --git-dir >/dev/null 2>&1; then
  echo "0.0.0+unknown"
  exit 0
fi
dirty=""
if ! git diff --quiet HEAD -- 2>/dev/null; then
  dirty=".dirty"
fi
if desc=$(git describe --tags --match 'v[0-9]*' --long 2>/dev/null); then
  # v1.2.3-0-gabc1234 (on the tag) or v1.2.3-3-gabc1234.
  tag=${desc%-*-g*}
  rest=${desc#"$tag"-}
  n=${rest%%-g*}
  hash=${rest#*-g}
  v=${tag#v}
  if [ "$n" = 0 ]; then
    echo "$v$dirty" | sed 's/^\([0-9.]*\)\.dirty$/\1+dirty/'
  else
    echo "$v+git$n.$hash$dirty"
  fi
  exit 0
fi
echo "0.0.0+git$(TZ=UTC0 git log -1 --format=%cd --date=format-local:%Y%m%d).$(git rev-parse --short=7 HEAD)$dirty"
