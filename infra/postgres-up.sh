#!/usr/bin/env bash
# Make sure a local Postgres answers at 127.0.0.1:5432 with a `test` database (trust auth), for
# development and CI. Uses the Debian cluster when one is installed; installs one when not.
set -euo pipefail
PGHOST=127.0.0.1; PGPORT=${PGPORT:-5432}

ready() { pg_isready -q -h "$PGHOST" -p "$PGPORT" 2>/dev/null; }

if ! command -v pg_isready >/dev/null 2>&1 || ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  echo "infra: installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
fi

if ! ready; then
  echo "infra: starting the local PostgreSQL cluster"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
fi
for _ in $(seq 1 60); do ready && break; sleep 0.5; done
ready || { echo "infra: PostgreSQL did not come up at $PGHOST:$PGPORT" >&2; exit 1; }

# Trust auth for local TCP connections and a `test` database, as the specs expect.
if ! psql -h "$PGHOST" -p "$PGPORT" -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
  hba=$(ls /etc/postgresql/*/main/pg_hba.conf | tail -1)
  echo "infra: enabling trust auth on 127.0.0.1 in $hba"
  sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  su postgres -c "psql -Atc 'SELECT pg_reload_conf()'" >/dev/null
fi
if ! psql -h "$PGHOST" -p "$PGPORT" -U postgres -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1; then
  psql -h "$PGHOST" -p "$PGPORT" -U postgres -d postgres -c 'CREATE DATABASE test' >/dev/null
fi
echo "infra: PostgreSQL ready at postgres://postgres@$PGHOST:$PGPORT/test"
