#!/usr/bin/env bash
# Install (Debian packages, only those missing) and start the servers the test suite talks to, on
# loopback only: PostgreSQL (attempt store tests) and Redis (job queue tests); and install Chromium
# with chromedriver (dashboard browser test). Idempotent, and quick when everything already runs.
# Nothing is exported: the tests use the URLs printed at the end (override them with
# KSHOT_TEST_POSTGRES_URL / KSHOT_TEST_REDIS_URL to use other servers; then this script is not needed).
set -euo pipefail

PG_HOST=127.0.0.1 PG_PORT=5432 PG_USER=kshot PG_PASSWORD=kshot PG_DB=kshot_test
REDIS_HOST=127.0.0.1 REDIS_PORT=6379

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else echo "services.sh: '$*' needs root or sudo." >&2; return 1
  fi
}

wait_for() {  # wait_for WHAT COMMAND...: up to 30 s
  local what=$1; shift
  for _ in $(seq 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "services.sh: $what did not come up." >&2; return 1
}

install_missing() {
  local missing=()
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "services.sh: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

pg_test_login() {
  PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=3 psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -qtAc "SELECT 1" >/dev/null 2>&1
}

start_postgres() {
  pg_test_login && return 0
  if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then
    local version
    version=$(ls /usr/lib/postgresql | sort -V | tail -1)
    if ! pg_lsclusters -h | awk '{print $1, $2}' | grep -qx "$version main"; then
      as_root pg_createcluster --port "$PG_PORT" "$version" main >/dev/null
    fi
    # A conf.d drop-in (Debian clusters include conf.d/) rather than an edit of postgresql.conf.
    echo "listen_addresses = '$PG_HOST'" | as_root tee "/etc/postgresql/$version/main/conf.d/kshot-loopback.conf" >/dev/null
    as_root pg_ctlcluster "$version" main start
    wait_for PostgreSQL pg_isready -q -h "$PG_HOST" -p "$PG_PORT"
  fi
  # The test role may create databases: each test gets its own empty one and drops it after.
  local su=(as_root runuser -u postgres -- psql -p "$PG_PORT" -v ON_ERROR_STOP=1 -qtA)
  "${su[@]}" -c "DO \$\$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
        CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
      END IF; END \$\$;"
  if [ "$("${su[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
    "${su[@]}" -c "CREATE DATABASE $PG_DB OWNER $PG_USER"
  fi
  wait_for "PostgreSQL login as $PG_USER" pg_test_login
}

start_redis() {
  redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0
  # No persistence: test queues are throw-away.
  redis-server --bind "$REDIS_HOST" --port "$REDIS_PORT" --protected-mode yes --save "" --appendonly no \
    --daemonize yes --logfile /tmp/kshot-test-redis.log --dir /tmp
  wait_for Redis redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping
}

install_missing
start_postgres
start_redis
echo "postgres: postgresql+psycopg://$PG_USER:$PG_PASSWORD@$PG_HOST:$PG_PORT/$PG_DB"
echo "redis:    redis://$REDIS_HOST:$REDIS_PORT/15"
echo "chromium: $(command -v chromium) (driver: $(command -v chromedriver))"
