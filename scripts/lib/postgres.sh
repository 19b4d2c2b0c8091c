#!/usr/bin/env bash
# The one way a PostgreSQL server comes up in this repository: the suite's shared server
# (scripts/test), the private servers of the Rust tests (server/shoal-control-plane/src/
# testsuite.rs, which runs this file as a command) and the quickstart's (scripts/quickstart).
#
# Sourced, it defines the pg_* functions below (and those of common.sh). Run, it is the test
# harness's interface to them:
#
#   postgres.sh start DATA_DIR MAX_CONNECTIONS [PORT]
#       a throwaway server (a new cluster in DATA_DIR unless it holds one) on 127.0.0.1:PORT,
#       or on a free port; prints the port
#   postgres.sh stop DATA_DIR fast|immediate
#
# The server is the one in SHOAL_PG_BIN (a bin directory) if set, else the newest installed.

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# PostgreSQL refuses to run as root, so as root its server tools run as the `postgres` user.
pg_as() {
  if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_find_bin() { # the server's bin directory: SHOAL_PG_BIN, else the newest under /usr/lib/postgresql
  if [[ -n ${SHOAL_PG_BIN:-} ]]; then echo "$SHOAL_PG_BIN"; return; fi
  local init
  init=$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)
  [[ -x $init ]] && dirname "$init"
}

pg_install() { # sets PG_BIN, installing Debian's postgresql package if no server is there
  PG_BIN=$(pg_find_bin) && return
  echo "PostgreSQL server not found: installing the postgresql package"
  apt_install postgresql || return
  PG_BIN=$(pg_find_bin) || { echo "no PostgreSQL under /usr/lib/postgresql after installing it" >&2; return 1; }
}

pg_init() { # pg_init DATA: a new cluster in DATA, trust authentication, superuser `postgres`
  local data=$1
  mkdir -p "$data" || return
  if [[ $EUID -eq 0 ]]; then
    # The postgres user must reach the data directory (mktemp makes its parent 700).
    chmod 755 "$(dirname "$data")" && chown postgres:postgres "$data" || return
    runuser -u postgres -- test -w "$data" || {
      echo "the postgres user cannot reach $data: make its parent directories traversable (chmod o+x)" >&2
      return 1
    }
  fi
  pg_as "$PG_BIN/initdb" -D "$data" -A trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null
}

pg_start() { # pg_start DATA PORT [SERVER OPTION...]: on 127.0.0.1:PORT only, log in DATA/server.log
  local data=$1 port=$2
  shift 2
  pg_as "$PG_BIN/pg_ctl" -D "$data" -w -t 60 -l "$data/server.log" \
    -o "-c listen_addresses=127.0.0.1 -p $port $*" start >/dev/null
}

pg_start_throwaway() { # pg_start_throwaway DATA MAX_CONNECTIONS [PORT]: sets PG_PORT
  local data=$1 max_connections=$2 port=${3:-}
  [[ -f $data/PG_VERSION ]] || pg_init "$data" || return
  # Durability is pointless for throwaway data. The socket is in the data directory: processes
  # in other network namespaces reach the server through it.
  local options=(-k "$data" -c fsync=off -c synchronous_commit=off -c full_page_writes=off
    -c "max_connections=$max_connections")
  if [[ -n $port ]]; then
    PG_PORT=$port
    pg_start "$data" "$PG_PORT" "${options[@]}" && return
  else
    for _ in 1 2 3 4 5; do # another process may take the free port before PostgreSQL binds it
      PG_PORT=$(free_port 127.0.0.1)
      pg_start "$data" "$PG_PORT" "${options[@]}" && return
    done
  fi
  echo "PostgreSQL did not start; its log:" >&2
  tail -n 30 "$data/server.log" >&2
  return 1
}

pg_running() { # pg_running DATA
  [[ -n ${PG_BIN:-} && -f $1/postmaster.pid ]] && pg_as "$PG_BIN/pg_ctl" -D "$1" status >/dev/null 2>&1
}

pg_port() { sed -n 4p "$1/postmaster.pid"; } # pg_port DATA: the running server's, from its pid file

pg_stop() { # pg_stop DATA fast|immediate: fast cuts clients off; immediate also skips the checkpoint
  [[ -f $1/postmaster.pid ]] || return 0
  pg_as "$PG_BIN/pg_ctl" -D "$1" -m "$2" -w -t 60 stop >/dev/null
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  usage() {
    echo "usage: postgres.sh start DATA_DIR MAX_CONNECTIONS [PORT] | stop DATA_DIR fast|immediate" >&2
    exit 2
  }
  PG_BIN=$(pg_find_bin) || {
    echo "PostgreSQL not found under /usr/lib/postgresql: run scripts/test (it installs it) or set SHOAL_PG_BIN" >&2
    exit 1
  }
  case ${1:-} in
  start)
    (($# == 3 || $# == 4)) || usage
    pg_start_throwaway "$2" "$3" "${4:-}"
    echo "$PG_PORT"
    ;;
  stop)
    (($# == 3)) || usage
    pg_stop "$2" "$3"
    ;;
  *) usage ;;
  esac
fi
