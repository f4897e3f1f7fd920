#!/usr/bin/env bash
# Writes the TLS fixtures of tests/mqtt.rs: a throw-away CA and a server
# certificate for 127.0.0.1 signed by it (valid 100 years). Test use only: the
# private keys are public.
set -euo pipefail
cd "$(dirname "$0")/.."
out=tests/data/mqtt
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 36500 -subj "/CN=hark test CA" \
    -keyout "$tmp/ca.key" -out "$out/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$out/server.key" -out "$tmp/server.csr"
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > "$tmp/ext"
openssl x509 -req -in "$tmp/server.csr" -CA "$out/ca.pem" -CAkey "$tmp/ca.key" \
    -CAserial "$tmp/ca.srl" -CAcreateserial -days 36500 -extfile "$tmp/ext" -out "$out/server.pem"
chmod 644 "$out/server.key"
