#!/bin/sh
# Entry point of the orchestrator image: secrets as files, settings as the environment.
#
# Each non-empty regular file in $SECRETS_DIR (default /run/secrets: compose and Kubernetes
# mount secrets there) whose name is an environment variable name (STRIPE_API_KEY,
# PGPASSWORD, ...) is exported under that name, unless the variable is already set. An empty
# file exports nothing, so an unused provider stays unconfigured. Then the CLI runs with the
# container's arguments (`up --role api`, `migrate`, ...).
set -eu

secrets_dir="${SECRETS_DIR:-/run/secrets}"
if [ -d "$secrets_dir" ]; then
    for file in "$secrets_dir"/*; do
        [ -f "$file" ] && [ -s "$file" ] || continue
        name=$(basename "$file")
        case "$name" in
            [!A-Za-z_]* | *[!A-Za-z0-9_]*) continue ;;
        esac
        eval "current=\${$name:-}"
        if [ -z "$current" ]; then
            value=$(cat "$file")  # command substitution drops the trailing newline
            export "$name=$value"
        fi
    done
fi

exec checkout-orchestrator "$@"
