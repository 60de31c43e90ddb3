#!/usr/bin/env bash
# scripts/package.sh (make package): builds the space-captain .deb and .rpm
# for linux/amd64 and linux/arm64 with nfpm, into dist/.
#
# Each package holds sc-cert, sc-server and sc-client (/usr/bin), their man
# pages (section 1, and section 5 for the configuration file and the hosts
# file), bash, zsh and fish completions, the systemd unit
# (deploy/systemd/sc-server.service with /usr/bin/sc-server), the default
# configuration /etc/space-captain/sc-server.toml (deploy/sc-server.toml, a
# conffile: kept on upgrade when edited), the copyright and the docs. The
# man pages and completions are the ones go generate wrote into docs/
# (TestDocsUpToDate keeps them in step with the commands).
#
# The version comes from git describe (scripts/version.sh) and is linked
# into every binary, so sc-server --version prints the package's version.
# nfpm is a pinned version built once into .cache (it is a build tool, not
# a dependency: the module's go.mod never names it).
#
#   scripts/package.sh                       # both architectures, both formats
#   scripts/package.sh --arch amd64 --out /tmp/pkgs
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=auto

NFPM_VERSION=v2.48.0
out=dist
arches="amd64 arm64"
while [ $# -gt 0 ]; do
  case "$1" in
  --out) out=$2; shift ;;
  --arch) arches=$2; shift ;;
  -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "package.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

version=$(scripts/version.sh)
cache=${SC_CACHE_DIR:-$PWD/.cache}/nfpm-$NFPM_VERSION
nfpm=$cache/nfpm
if [ ! -x "$nfpm" ]; then
  echo "package.sh: building nfpm $NFPM_VERSION (once; a few minutes)" >&2
  mkdir -p "$cache"
  GOBIN=$cache go install "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sc-package.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The architecture-independent files, laid out once.
common=$work/common
mkdir -p "$common"/{man/man1,man/man5,completions/bash,completions/zsh,completions/fish,systemd,etc,doc/top,doc/docs,doc/examples}
for page in docs/man/*.[15]; do
  section=${page##*.}
  gzip -9n <"$page" >"$common/man/man$section/$(basename "$page").gz"
done
ls "$common"/man/man5/*.gz >/dev/null 2>&1 || { echo "package.sh: no section 5 pages in docs/man: run go generate ./..." >&2; exit 1; }
cp docs/completions/bash/* "$common/completions/bash/"
cp docs/completions/zsh/* "$common/completions/zsh/"
cp docs/completions/fish/* "$common/completions/fish/"
# One unit for both ways to install: the package's binary is in /usr/bin.
sed '/^#/!s|/usr/local/bin/sc-server|/usr/bin/sc-server|g' deploy/systemd/sc-server.service >"$common/systemd/sc-server.service"
cp deploy/sc-server.toml "$common/etc/sc-server.toml"
cp README.md "$common/doc/top/"
cp docs/*.md "$common/doc/docs/"
sed '/^#/!s|/usr/local/bin/sc-server|/usr/bin/sc-server|g' deploy/systemd/sc-server.service.d/credentials.conf >"$common/doc/examples/credentials.conf"
sed '/^#/!s|/usr/local/bin/sc-server|/usr/bin/sc-server|g' deploy/systemd/sc-server.service.d/token.conf >"$common/doc/examples/token.conf"
cp deploy/haproxy/haproxy.cfg "$common/doc/examples/"
# The Debian copyright file, from LICENSE.
{
  echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
  echo "Upstream-Name: space-captain"
  echo "Source: https://github.com/spacecaptain/spacecaptain"
  echo "Comment: The binaries are Go programs (sc-cert and sc-server for amd64 link"
  echo " glibc dynamically, for PKCS#11; the others are static); the Go modules"
  echo " they contain, under their own licenses, are listed in the source's go.mod."
  echo
  echo "Files: *"
  echo "Copyright: $(sed -n 's/^Copyright (c) //p' LICENSE)"
  echo "License: Expat"
  sed -n '/^Permission/,$p' LICENSE | sed 's/^$/./; s/^/ /'
} >"$common/doc/top/copyright"
# A native package's changelog: this build.
{
  echo "space-captain ($version) unstable; urgency=medium"
  echo
  echo "  * Built from $(git rev-parse --short=12 HEAD 2>/dev/null || echo 'a source tree') as version $version."
  echo
  echo " -- Space Captain Authors <space-captain@users.noreply.github.com>  $(LC_ALL=C date -u -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")"
} | gzip -9n >"$common/doc/top/changelog.gz"

mkdir -p "$out"
for arch in $arches; do
  stage=$work/$arch
  cp -r "$common" "$stage"
  mkdir -p "$stage/bin"
  echo "package.sh: building linux/$arch $version" >&2
  ldflags="-s -w -X github.com/spacecaptain/spacecaptain/internal/cli.version=$version"
  # PKCS#11 keys (issue 17) need cgo: the amd64 sc-cert and sc-server are
  # built with it, linked against glibc (2.34 or later) and nothing else,
  # with Go's own DNS resolver and user lookup as in a static build
  # (netgo, osusergo). The arm64 binaries, cross-built, and sc-client stay
  # static, without PKCS#11 (docs/DEPLOY.md, "Keys in a token").
  if [ "$arch" = amd64 ]; then
    cc=${CC_AMD64:-}
    if [ -z "$cc" ]; then
      case $(uname -m) in
      x86_64) cc=gcc ;;
      *) cc=x86_64-linux-gnu-gcc ;;
      esac
    fi
    if ! command -v "$cc" >/dev/null 2>&1; then
      echo "package.sh: the amd64 binaries carry PKCS#11 and need a C compiler for linux/amd64: $cc is missing (scripts/deps.sh installs gcc; set CC_AMD64 for another)" >&2
      exit 1
    fi
    CGO_ENABLED=1 CC=$cc GOOS=linux GOARCH=$arch go build -trimpath -buildmode=pie -tags netgo,osusergo \
      -ldflags "$ldflags" -o "$stage/bin/" ./cmd/sc-cert ./cmd/sc-server
    CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -buildmode=pie \
      -ldflags "$ldflags" -o "$stage/bin/" ./cmd/sc-client
    depends=libc6 rpm_depends=glibc
    # Only sc-client is a static PIE here: the others' overrides would be
    # unused, which lintian warns about.
    grep -v -e 'usr/bin/sc-cert' -e 'usr/bin/sc-server' packaging/deb/lintian-overrides >"$stage/lintian-overrides"
  else
    CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -buildmode=pie \
      -ldflags "$ldflags" -o "$stage/bin/" ./cmd/sc-cert ./cmd/sc-server ./cmd/sc-client
    depends= rpm_depends=
    cp packaging/deb/lintian-overrides "$stage/lintian-overrides"
  fi
  for packager in deb rpm; do
    case $packager in
    deb) unitdir=/lib/systemd/system zshdir=/usr/share/zsh/vendor-completions ;;
    rpm) unitdir=/usr/lib/systemd/system zshdir=/usr/share/zsh/site-functions ;;
    esac
    config=packaging/nfpm.yaml
    if [ -n "$depends" ]; then
      # The cgo binaries need glibc 2.34 or later (the newest symbol
      # versions they use): a dependency of this package alone.
      config=$work/nfpm-$arch-$packager.yaml
      case $packager in
      deb) libc="$depends (>= 2.34)" ;;
      rpm) libc="$rpm_depends >= 2.34" ;;
      esac
      { cat packaging/nfpm.yaml; printf '\ndepends:\n  - "%s"\n' "$libc"; } >"$config"
    fi
    STAGE=$stage ARCH=$arch VERSION=$version UNITDIR=$unitdir ZSHDIR=$zshdir \
      "$nfpm" package --config "$config" --packager "$packager" --target "$out/" >&2
  done
done
ls -1 "$out"/space-captain[_-]"$version"[_-]* 2>/dev/null || ls -1 "$out"
