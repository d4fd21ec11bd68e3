#!/bin/sh
# Creates Temporal's two databases and brings their schemas to the server's version.
# Idempotent: safe on every `docker compose up` (update-schema only applies what is missing).
set -eu
tool() { temporal-sql-tool --plugin postgres12 --ep temporal-postgresql -u temporal -p 5432 "$@"; }
schema=/etc/temporal/schema/postgresql/v12
for db in temporal:temporal temporal_visibility:visibility; do
  name=${db%%:*}; dir=${db##*:}
  tool --db "$name" create || echo "database $name exists"
  tool --db "$name" setup-schema -v 0.0 || echo "schema of $name exists"
  tool --db "$name" update-schema -d "$schema/$dir/versioned"
done
echo "Temporal schema is up to date"
