#!/bin/sh
# Entry point of the mailflow image: read *_FILE secrets, then become `mailflow ARGS`.
#
# mailflow reads IMAP and SMTP passwords from files itself (password_file in mailflow.yaml).
# The PostgreSQL password is libpq's business: it takes PGPASSWORD from the environment,
# so PGPASSWORD_FILE (a compose or swarm secret such as /run/secrets/postgres_password)
# is turned into it here, the convention of the official database images.
set -eu
if [ -n "${PGPASSWORD_FILE:-}" ]; then
    if [ ! -r "$PGPASSWORD_FILE" ]; then
        echo "mailflow-entrypoint: cannot read PGPASSWORD_FILE $PGPASSWORD_FILE" >&2
        exit 2
    fi
    PGPASSWORD=$(cat "$PGPASSWORD_FILE")
    export PGPASSWORD
    unset PGPASSWORD_FILE
fi
exec mailflow "$@"
