#!/bin/sh
# Create the secret files deploy/docker-compose.yml mounts (compose refuses to start when one
# is missing): a random PGPASSWORD, a random CHECKOUT_NATS_PASSWORD, a random
# CHECKOUT_PRIVACY_KEK (the key-encryption key of docs/privacy.md), a private CA for NATS
# with the servers' certificate, and an empty file per provider credential. Fill in the
# providers you use; an empty file leaves that provider unconfigured. Never overwrites.
# Compose bind-mounts these files with their own mode and owner, and the image runs as an
# unprivileged user: the files are 0644 (the private keys 0600: only the NATS servers, which
# run as root in their containers, read them), the directory 0700 (nobody else on the host
# reads). Needs openssl for the certificates.
set -eu
cd "$(dirname "$0")"
chmod 0700 .
umask 022
if [ ! -e PGPASSWORD ]; then
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > PGPASSWORD
fi
if [ ! -e CHECKOUT_NATS_PASSWORD ]; then
    # letters only: nats-server reads it as a config value ($CHECKOUT_NATS_PASSWORD), where
    # digits alone would be a number
    LC_ALL=C tr -dc 'A-Za-z' < /dev/urandom | head -c 40 > CHECKOUT_NATS_PASSWORD
fi
if [ ! -e CHECKOUT_PRIVACY_KEK ]; then
    # the key-encryption key of customers' data keys: 32 random bytes, base64 (docs/privacy.md)
    head -c 32 /dev/urandom | base64 > CHECKOUT_PRIVACY_KEK
fi
if [ ! -e nats-ca.crt ]; then
    # a private CA (kept here, not mounted anywhere) and the certificate of the three NATS
    # servers, valid for their compose names and for the loopback ports compose publishes
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=checkout-orchestrator NATS CA" -keyout nats-ca.key -out nats-ca.crt \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    rm -f nats-server.crt nats-server.key
fi
if [ ! -e nats-server.crt ]; then
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=nats" \
        -keyout nats-server.key -out nats-server.csr 2>/dev/null
    printf '%s\n' \
        "subjectAltName=DNS:nats-1,DNS:nats-2,DNS:nats-3,DNS:localhost,IP:127.0.0.1" \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" \
        "authorityKeyIdentifier=keyid" \
        "subjectKeyIdentifier=hash" > nats-server.ext
    openssl x509 -req -in nats-server.csr -CA nats-ca.crt -CAkey nats-ca.key -days 825 \
        -set_serial "0x$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" \
        -extfile nats-server.ext -out nats-server.crt 2>/dev/null
    rm -f nats-server.csr nats-server.ext
fi
chmod 0600 nats-ca.key nats-server.key
for name in STRIPE_API_KEY STRIPE_WEBHOOK_SECRET POLAR_ACCESS_TOKEN POLAR_WEBHOOK_SECRET \
    LOMI_API_KEY LOMI_WEBHOOK_SECRET KONG_TOKEN KONG_STRIPE_API_KEY; do
    [ -e "$name" ] || : > "$name"
done
ls -l
