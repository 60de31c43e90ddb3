#!/usr/bin/env bash
# The real install: dpkg -i the .deb of this machine's architecture, use
# the installed programs, then dpkg --purge it, leaving the machine as it
# found it. It changes the machine, so it runs as its own step after every
# other test (scripts/test.sh), never inside go test, and only as root.
#
# With the package installed, and no systemd running:
#  - every installed binary says the package's version;
#  - the man pages for the configuration file formats are installed;
#  - as an unprivileged user (nobody), the installed sc-cert init makes a
#    certificate layout, and the installed sc-server --check validates it
#    together with the installed /etc/space-captain/sc-server.toml (read
#    by default), and --print-config shows settings from that file;
#  - that user then runs the installed sc-server on loopback and the
#    installed sc-client talks to it, trusting the layout's CA;
#  - dpkg --purge removes every file the package installed, the
#    configuration included, and the package is no longer known to dpkg.
#
# It refuses to run when space-captain is installed already, or when a file
# of the package exists on the machine: it would replace the operator's
# files. It cleans up on any failure.
#
# Usage: scripts/install-test.sh DIR     (DIR holds the packages)
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

dist=${1:?usage: scripts/install-test.sh DIR}
skip() {
  if [ "${CI:-}" = true ]; then
    echo "install-test: $*, and CI=true forbids skipping" >&2
    exit 1
  fi
  echo "install-test: skipping: $*" >&2
  exit 0
}
[ "$(id -u)" = 0 ] || skip "not root (dpkg -i needs it)"
command -v dpkg >/dev/null 2>&1 || skip "not a Debian system"
id nobody >/dev/null 2>&1 || skip "no user nobody to run the programs as"
command -v setpriv >/dev/null 2>&1 || skip "no setpriv (util-linux) to run the programs as nobody"

version=$(scripts/version.sh)
arch=$(dpkg --print-architecture)
deb=$dist/space-captain_${version}_$arch.deb
[ -f "$deb" ] || { echo "install-test: no $deb (scripts/package.sh --out $dist)" >&2; exit 1; }

# dpkg's state of the package: empty or not-installed when it knows none.
state() { dpkg-query -W -f='${db:Status-Status}' space-captain 2>/dev/null || true; }
case $(state) in
"" | not-installed) ;;
*) skip "space-captain is already on this machine (dpkg: $(state)); not touching it" ;;
esac
# Every file (not directory) the package would install.
mapfile -t files < <(dpkg-deb --contents "$deb" | awk '{print $NF}' | grep -v '/$' | sed 's|^\./|/|')
for f in "${files[@]}"; do
  [ ! -e "$f" ] && [ ! -L "$f" ] || skip "$f exists already; the package would replace it"
done
[ ! -e /etc/space-captain ] || skip "/etc/space-captain exists already"

work=$(mktemp -d "${TMPDIR:-/tmp}/sc-install-test.XXXXXX")
server_pid=
cleanup() {
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  if [ -n "$(state)" ] && [ "$(state)" != not-installed ]; then
    dpkg --purge space-captain >/dev/null 2>&1 || echo "install-test: dpkg --purge space-captain failed: remove it by hand" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "install-test: FAILED: $*" >&2; exit 1; }
# setpriv execs the program itself (runuser would stay as its parent and
# swallow the exit status of a signalled server).
nobody=(env -u XDG_CONFIG_HOME HOME=/nonexistent setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups --)
as_nobody() { (cd "$work" && exec "${nobody[@]}" "$@"); }

echo "install-test: dpkg -i $deb" >&2
dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg -i"; }
[ "$(dpkg-query -W -f='${Status} ${Version}' space-captain)" = "install ok installed $version" ] ||
  fail "dpkg-query: $(dpkg-query -W -f='${Status} ${Version}' space-captain)"

for b in sc-cert sc-server sc-client; do
  [ "$(command -v "$b")" = "/usr/bin/$b" ] || fail "$b is $(command -v "$b"), want /usr/bin/$b"
  got=$(as_nobody "/usr/bin/$b" --version)
  [ "$got" = "$b $version" ] || fail "$b --version: '$got', want '$b $version'"
done
if command -v man >/dev/null 2>&1; then
  for page in 5:sc-server.toml 5:sc-client-hosts 1:sc-server; do
    p=$(man -w "${page%%:*}" "${page#*:}" 2>/dev/null) || fail "man ${page%%:*} ${page#*:}: no page installed"
    case $p in /usr/share/man/*) ;; *) fail "man ${page%%:*} ${page#*:} is $p" ;; esac
  done
fi

chown nobody "$work"
chmod 0700 "$work"
as_nobody /usr/bin/sc-cert init --dir "$work/certs" >"$work/init.txt" 2>&1 || { cat "$work/init.txt" >&2; fail "sc-cert init as nobody"; }
[ "$(stat -c '%U %a' "$work/certs/server.key")" = "nobody 600" ] || fail "server.key is $(stat -c '%U %a' "$work/certs/server.key")"
flags=(--cert "$work/certs/server.crt" --key "$work/certs/server.key")
as_nobody /usr/bin/sc-server --check "${flags[@]}" >"$work/check.txt" 2>&1 || { cat "$work/check.txt" >&2; fail "sc-server --check as nobody"; }
grep -q 'configuration OK' "$work/check.txt" || fail "sc-server --check did not say configuration OK"
grep -q 'config: *\/etc\/space-captain\/sc-server.toml (default path)' "$work/check.txt" ||
  { cat "$work/check.txt" >&2; fail "sc-server --check did not read /etc/space-captain/sc-server.toml"; }
as_nobody /usr/bin/sc-server --print-config "${flags[@]}" >"$work/print.txt" 2>&1 || { cat "$work/print.txt" >&2; fail "sc-server --print-config"; }
grep -Eq '^log-format = "json" +# /etc/space-captain/sc-server.toml:[0-9]+$' "$work/print.txt" ||
  { cat "$work/print.txt" >&2; fail "--print-config does not show log-format from the installed file"; }
grep -Eq '^cert = ".*" +# command line$' "$work/print.txt" || fail "--print-config does not show cert from the command line"
echo "install-test: sc-cert init, sc-server --check and --print-config as nobody: OK" >&2

# The installed server on loopback, the installed client against it.
(cd "$work" && exec "${nobody[@]}" /usr/bin/sc-server "${flags[@]}" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 >/dev/null 2>"$work/server.log") &
server_pid=$!
deadline=$((SECONDS + 30))
addr=
until addr=$(sed -n 's/.*"msg":"serving","addr":"\([^"]*\)".*/\1/p' "$work/server.log" | head -1) && [ -n "$addr" ]; do
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; fail "sc-server exited"; }
  [ "$SECONDS" -lt "$deadline" ] || { cat "$work/server.log" >&2; fail "sc-server did not log serving within 30s"; }
  sleep 0.1
done
reply=$(as_nobody /usr/bin/sc-client echo "hello from the package" --server "$addr" --ca "$work/certs/ca.crt") ||
  fail "sc-client echo against the installed server"
[ "$reply" = "hello from the package" ] || fail "sc-client echo replied '$reply'"
kill -TERM "$server_pid"
wait "$server_pid" || fail "sc-server did not exit 0 after SIGTERM"
server_pid=
echo "install-test: the installed sc-server served the installed sc-client on $addr" >&2

echo "install-test: dpkg --purge space-captain" >&2
dpkg --purge space-captain >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg --purge"; }
case $(state) in
"" | not-installed) ;;
*) fail "dpkg still has space-captain: $(state)" ;;
esac
for f in "${files[@]}"; do
  [ ! -e "$f" ] || fail "$f is still there after purge"
done
[ ! -e /etc/space-captain ] || fail "/etc/space-captain is still there after purge"
echo "install-test: installed, used and purged $deb; the machine is as it was" >&2
