#!/usr/bin/env bash
# Install and start a Docker engine for the `docker`-marked tests (DESIGN.md section 6).
# Safe to run again: installs only what is missing, starts dockerd only when no engine answers.
# Needs root and apt (Debian); prints why and exits 1 otherwise, and the tests then skip with that reason.
# dockerd runs without a bridge or iptables rules: containers use `--network host` or `none`.
set -euo pipefail

SOCK=/var/run/docker.sock
LOG=${POSESYN_DOCKERD_LOG:-/var/log/posesyn-dockerd.log}

if [ "$(id -u)" != 0 ]; then echo "setup_docker: needs root to install/start dockerd" >&2; exit 1; fi
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null || ! [ -x /usr/bin/docker ]; then
  if ! command -v apt-get >/dev/null; then echo "setup_docker: no apt-get to install docker.io" >&2; exit 1; fi
  echo "setup_docker: installing docker.io and debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    docker.io debootstrap ca-certificates >/dev/null
fi

if docker -H "unix://$SOCK" info >/dev/null 2>&1; then echo "setup_docker: engine already running"; exit 0; fi

echo "setup_docker: starting dockerd (log: $LOG)"
# setsid: the daemon outlives this script and the test process that called it.
setsid dockerd --host "unix://$SOCK" --bridge=none --iptables=false --ip-masq=false --ip6tables=false \
  >"$LOG" 2>&1 < /dev/null &
for _ in $(seq 1 60); do
  if docker -H "unix://$SOCK" info >/dev/null 2>&1; then echo "setup_docker: engine ready"; exit 0; fi
  sleep 1
done
echo "setup_docker: dockerd did not become ready in 60 s; last log lines:" >&2
tail -n 20 "$LOG" >&2
exit 1
