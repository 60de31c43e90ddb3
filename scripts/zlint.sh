#!/usr/bin/env bash
# Lints every kind of certificate sc-cert makes with zlint v3.7.3 under the
# RFC sources (RFC 5280, 5480, 3279, 8813) and fails on any error or warning,
# naming the certificate and the lint. The kinds: for each key type, a local
# CA and the server certificate it issues (sc-cert init), a self-signed
# server certificate (init --self-signed), a CA and an issued certificate
# from sc-cert create, and a certificate re-issued by sc-cert rotate.
#
# The CA/Browser Forum lints are left out on purpose: they are rules for the
# public web PKI (AIA, policies, no 127.0.0.1 SAN, <= 200-day lifetimes),
# not for a private, pinned certificate (see docs and NOTES.md).
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
trap 'rm -rf "$work"' EXIT
go build -o "$work/sc-cert" ./cmd/sc-cert
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
echo "zlint: ${#certs[@]} certificates, no error or warning under $SOURCES"
