#!/usr/bin/env bash
# Entry point after the official mariadb image's contract, written for Debian's packages.
set -euo pipefail

env_alias() { # env_alias NAME: MARIADB_NAME, else MYSQL_NAME, else the content of *_FILE
  local m=MARIADB_$1 y=MYSQL_$1
  local mf=${m}_FILE yf=${y}_FILE
  if [ -n "${!mf:-}" ]; then export "$m"="$(cat "${!mf}")"; elif [ -n "${!yf:-}" ]; then export "$m"="$(cat "${!yf}")"; fi
  if [ -z "${!m:-}" ] && [ -n "${!y:-}" ]; then export "$m"="${!y}"; fi
}

if [ "${1:-}" = mariadbd ] || [ "${1:-}" = mysqld ]; then
  for v in ROOT_PASSWORD ALLOW_EMPTY_ROOT_PASSWORD DATABASE USER PASSWORD; do env_alias "$v"; done
  if [ ! -d /var/lib/mysql/mysql ]; then
    if [ -z "${MARIADB_ROOT_PASSWORD:-}" ] && [ -z "${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:-}" ]; then
      echo "error: database is uninitialized and no root password is set;" \
           "set MARIADB_ROOT_PASSWORD (or MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1)" >&2
      exit 1
    fi
    chown mysql:mysql /var/lib/mysql
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db --auth-root-authentication-method=normal >/dev/null
    mariadbd --user=mysql --skip-networking --socket=/run/mysqld/init.sock &
    pid=$!
    for _ in $(seq 60); do mariadb-admin --socket=/run/mysqld/init.sock ping >/dev/null 2>&1 && break; sleep 1; done
    sql() { mariadb --protocol=socket --socket=/run/mysqld/init.sock -uroot "$@"; }
    esc() { printf '%s' "$1" | sed "s/\\\\/\\\\\\\\/g; s/'/\\\\'/g"; }
    {
      echo "DELETE FROM mysql.global_priv WHERE User='' OR (User='root' AND Host NOT IN ('localhost'));"
      echo "CREATE USER 'root'@'%' IDENTIFIED BY '$(esc "${MARIADB_ROOT_PASSWORD:-}")';"
      echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
      echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$(esc "${MARIADB_ROOT_PASSWORD:-}")';"
      if [ -n "${MARIADB_DATABASE:-}" ]; then echo "CREATE DATABASE IF NOT EXISTS \`$MARIADB_DATABASE\`;"; fi
      if [ -n "${MARIADB_USER:-}" ]; then
        echo "CREATE USER '$MARIADB_USER'@'%' IDENTIFIED BY '$(esc "${MARIADB_PASSWORD:-}")';"
        if [ -n "${MARIADB_DATABASE:-}" ]; then echo "GRANT ALL ON \`$MARIADB_DATABASE\`.* TO '$MARIADB_USER'@'%';"; fi
      fi
      echo "FLUSH PRIVILEGES;"
    } | sql
    for f in /docker-entrypoint-initdb.d/*; do
      case "$f" in
        *.sh)  echo "running $f"
             # shellcheck disable=SC1090  # the init scripts are the user's
             . "$f" ;;
        *.sql) echo "running $f"; sql -p"${MARIADB_ROOT_PASSWORD:-}" "${MARIADB_DATABASE:-mysql}" < "$f" ;;
      esac
    done
    kill "$pid"; wait "$pid" || true
    echo "MariaDB init process complete; ready for start up."
  fi
  set -- "$@" --user=mysql
fi
exec "$@"
