#!/bin/sh
# Run once by the postgres image, when it initialises an empty data volume
# (/docker-entrypoint-initdb.d). The platform connects as `tradingplatform`, a role that is not a
# superuser (superusers bypass row-level security) and owns only its database. The audit role its
# migrations use is created here and granted to it, so the app role needs no CREATEROLE.
# Passwords come from the environment (.env), never from this file; psql quotes them (:'...').
set -eu
: "${POSTGRES_APP_PASSWORD:?set POSTGRES_APP_PASSWORD in .env}"
psql -v ON_ERROR_STOP=1 -v app_password="$POSTGRES_APP_PASSWORD" \
     --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE tradingplatform LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'app_password';
CREATE ROLE tradingplatform_audit NOLOGIN;
GRANT tradingplatform_audit TO tradingplatform;
ALTER DATABASE tradingplatform OWNER TO tradingplatform;
REVOKE ALL ON DATABASE tradingplatform FROM PUBLIC;
SQL
