#!/bin/sh
# Create the secret files deploy/docker-compose.yml mounts (compose refuses to start when one
# is missing): a random PGPASSWORD, and an empty file per provider credential. Fill in the
# providers you use; an empty file leaves that provider unconfigured. Never overwrites.
# Compose bind-mounts these files with their own mode and owner, and the image runs as an
# unprivileged user: the files are 0644, the directory 0700 (nobody else on the host reads).
set -eu
cd "$(dirname "$0")"
chmod 0700 .
umask 022
if [ ! -e PGPASSWORD ]; then
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > PGPASSWORD
fi
for name in STRIPE_API_KEY STRIPE_WEBHOOK_SECRET POLAR_ACCESS_TOKEN POLAR_WEBHOOK_SECRET \
    LOMI_API_KEY LOMI_WEBHOOK_SECRET KONG_TOKEN KONG_STRIPE_API_KEY; do
    [ -e "$name" ] || : > "$name"
done
ls -l
