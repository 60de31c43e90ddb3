#!/usr/bin/env bash
# Installs the Debian packages the test suite uses beside Go: openssl and curl
# (interop), libmbedtls-dev and gcc (the seed's Mbed TLS 2.x client), haproxy
# (scale-out test), testssl.sh and sslscan (TLS scanners), lintian and rpm
# (the .deb and .rpm checks of scripts/package-test.sh), softhsm2 (a software
# PKCS#11 token for the tests of keys in tokens) and opensc (its pkcs11-tool
# reads a token key's attributes). Packages already
# present are left alone. Without root (or password-less sudo) it only says
# what is missing: the tests that need a missing tool skip locally, and fail
# when CI=true.
set -euo pipefail

pkgs=(openssl curl gcc libc6-dev libmbedtls-dev haproxy testssl.sh sslscan lintian rpm softhsm2 opensc)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "deps: not a Debian system; install by hand if you want every test: ${missing[*]}" >&2
  exit 0
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    echo "deps: missing ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 0
  fi
fi

echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; then
  # A fresh machine may have no package lists yet.
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
