#!/usr/bin/env bash
# Lints every kind of certificate sc-cert and sc-server make with zlint
# v3.7.3 under the RFC sources (RFC 5280, 5480, 3279, 8813) and fails on any
# error or warning, naming the certificate and the lint. The kinds: for each
# key type, a local CA and the server certificate it issues (sc-cert init),
# a self-signed server certificate (init --self-signed), a CA and an issued
# certificate from sc-cert create, and a certificate re-issued by sc-cert
# rotate; then what sc-server makes by itself (issue 7): the layout of its
# first run, and the certificates it renews while it runs, CA-issued and
# self-signed.
#
# The CA/Browser Forum lints are left out on purpose: they are rules for the
# public web PKI (AIA, policies, no 127.0.0.1 SAN, <= 200-day lifetimes),
# not for a private, pinned certificate (docs/SECURITY.md, "Scanners").
#
# Usage: scripts/zlint.sh            (from anywhere in the repository)
set -euo pipefail

cd "$(dirname "$0")/.."
export GOTOOLCHAIN=auto

ZLINT_VERSION=v3.7.3
SOURCES=RFC5280,RFC5480,RFC3279,RFC8813
cache=${SC_CACHE_DIR:-$PWD/.cache}/zlint-$ZLINT_VERSION
zlint=$cache/zlint
if [ ! -x "$zlint" ]; then
  mkdir -p "$cache"
  GOBIN=$cache go install "github.com/zmap/zlint/v3/cmd/zlint@$ZLINT_VERSION"
fi

work=$(mktemp -d)
server_pid=
trap '[ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null; rm -rf "$work"' EXIT
go build -o "$work/sc-cert" ./cmd/sc-cert
go build -o "$work/sc-server" ./cmd/sc-server
# Warnings (the self-signed ca.crt copy) are expected; show them only on failure.
sc() { "$work/sc-cert" "$@" >/dev/null 2>"$work/stderr" || { cat "$work/stderr" >&2; return 1; }; }

certs=()
for kt in ecdsa-p256 ecdsa-p384 rsa-2048 rsa-3072 rsa-4096 ed25519; do
  d=$work/$kt
  sc init --dir "$d/ca" --key-type "$kt" --dns game.example --ip 192.0.2.1
  certs+=("$d/ca/ca.crt" "$d/ca/server.crt")
  sc init --dir "$d/self" --key-type "$kt" --self-signed
  certs+=("$d/self/server.crt")
  sc create --ca --key-type "$kt" --cert "$d/created-ca.crt" --key "$d/created-ca.key" --cn "zlint CA"
  sc create --key-type "$kt" --cert "$d/issued.crt" --key "$d/issued.key" \
    --issuer-cert "$d/created-ca.crt" --issuer-key "$d/created-ca.key" --dns issued.example
  certs+=("$d/created-ca.crt" "$d/issued.crt")
done
sc rotate --cert "$work/ecdsa-p256/ca/server.crt" --promote-next
sc rotate --cert "$work/ed25519/self/server.crt"
certs+=("$work/ecdsa-p256/ca/server.crt" "$work/ed25519/self/server.crt")

# serve_until DIR MSG [FLAGS...] runs sc-server in DIR on 127.0.0.1:0 with
# FLAGS until its JSON log has a record with message MSG (30 s at most),
# then stops it with SIGTERM.
serve_until() {
  local dir=$1 msg=$2
  shift 2
  (cd "$dir" && exec "$work/sc-server" --listen 127.0.0.1:0 --log-format json "$@" >/dev/null 2>"$dir/server.log") &
  server_pid=$!
  local deadline=$((SECONDS + 30))
  until grep -q "\"msg\":\"$msg\"" "$dir/server.log" 2>/dev/null; do
    if ! kill -0 "$server_pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      echo "zlint: sc-server in ${dir#"$work"/} did not log \"$msg\":" >&2
      cat "$dir/server.log" >&2
      return 1
    fi
    sleep 0.1
  done
  kill -TERM "$server_pid"
  wait "$server_pid" || { echo "zlint: sc-server did not exit 0 after SIGTERM" >&2; return 1; }
  server_pid=
}

# sc-server's first run makes the default layout (P-256, a local CA).
mkdir "$work/first-run"
serve_until "$work/first-run" serving
certs+=("$work/first-run/certs/ca.crt" "$work/first-run/certs/server.crt")

# Self-renewal: a certificate re-issued with --validity 1m (backdated 5
# minutes, so two thirds of its life are gone) is due at once, and
# sc-server renews it on its own as soon as it starts — signed by the local
# CA, or by its own key in the self-signed layout.
sc init --dir "$work/renew-ca/certs"
sc init --dir "$work/renew-self/certs" --self-signed
for d in renew-ca renew-self; do
  sc rotate --cert "$work/$d/certs/server.crt" --validity 1m
  before=$(cat "$work/$d/certs/server.crt")
  serve_until "$work/$d" "certificate renewed"
  if [ "$(cat "$work/$d/certs/server.crt")" = "$before" ]; then
    echo "zlint: sc-server logged a renewal in $d but the certificate did not change" >&2
    exit 1
  fi
  certs+=("$work/$d/certs/server.crt")
done

failed=0
for c in "${certs[@]}"; do
  out=$("$zlint" -includeSources "$SOURCES" "$c")
  # zlint prints one JSON object: {"lint_name":{"result":"pass"},...}.
  if ! grep -q '"result":"pass"' <<<"$out"; then
    echo "zlint: no lint ran on ${c#"$work"/}: $out" >&2
    failed=1
    continue
  fi
  bad=$(grep -oE '"[a-z0-9_]+":\{"result":"(error|warn|fatal)"[^}]*' <<<"$out" || true)
  if [ -n "$bad" ]; then
    echo "zlint: ${c#"$work"/}:" >&2
    sed 's/^/  /' <<<"$bad" >&2
    failed=1
  fi
done
if [ "$failed" -ne 0 ]; then
  echo "zlint: FAILED" >&2
  exit 1
fi
echo "zlint: ${#certs[@]} certificates (sc-cert's and sc-server's), no error or warning under $SOURCES"
