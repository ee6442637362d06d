#!/usr/bin/env bash
# Installs what the Flink backend needs (`emulator --backend flink`, `demo --backend flink`,
# the real-runtime tests): Java 17 from Debian and the PyPI package `apache-flink`, whose
# wheel carries a complete Flink distribution (bin/, lib/, conf/ inside the `pyflink`
# package). Idempotent: a second run changes nothing and only prints FLINK_HOME.
#
#   scripts/install-flink.sh [DIR]     # DIR defaults to .flink/ in the repository
#
# The last line on stdout is the FLINK_HOME to export (progress goes to stderr), so
#   export FLINK_HOME="$(scripts/install-flink.sh | tail -n1)"
set -euo pipefail

FLINK_VERSION="${FLINK_VERSION:-2.3.0}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-$repo/.flink}"
venv="$dir/venv"

log() { echo "install-flink: $*" >&2; }

java_major() {
    # `java -version` prints e.g. `openjdk version "17.0.15" 2025-04-15` on stderr.
    java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1
}

# Java 17 or newer (Flink 2.x needs 11+, and 17 is what Debian ships and Flink tests).
major="$(command -v java >/dev/null 2>&1 && java_major || true)"
if [ -z "$major" ] || [ "$major" -lt 17 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        log "Java 17+ is missing and apt-get is not available: install a JRE 17 and retry"
        exit 1
    fi
    log "installing openjdk-17-jre-headless"
    export DEBIAN_FRONTEND=noninteractive
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    if ! $sudo_cmd apt-get install -y -q --no-install-recommends openjdk-17-jre-headless >&2; then
        $sudo_cmd apt-get update -q >&2
        $sudo_cmd apt-get install -y -q --no-install-recommends openjdk-17-jre-headless >&2
    fi
fi

# Python 3.9-3.12 is what apache-flink 2.3 publishes wheels for; prefer a python3 that the
# venv module works with.
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    log "creating a virtualenv in $venv"
    mkdir -p "$dir"
    "$python" -m venv "$venv"
fi

installed="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("apache-flink"))' 2>/dev/null || true)"
if [ "$installed" != "$FLINK_VERSION" ]; then
    log "installing apache-flink==$FLINK_VERSION (the wheels carry the Flink distribution, ~400 MB)"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "apache-flink==$FLINK_VERSION" >&2
fi

flink_home="$("$venv/bin/python" -c 'import os, pyflink; print(os.path.dirname(os.path.abspath(pyflink.__file__)))')"
for f in bin/start-cluster.sh bin/flink conf/config.yaml lib; do
    if [ ! -e "$flink_home/$f" ]; then
        log "$flink_home/$f is missing: the apache-flink wheel is incomplete"
        exit 1
    fi
done
# The wheel may lose the execute bits of the distribution's scripts.
chmod +x "$flink_home"/bin/*.sh "$flink_home/bin/flink" 2>/dev/null || true

log "Java $(java_major), apache-flink $FLINK_VERSION, python $("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])')"
echo "$flink_home"
