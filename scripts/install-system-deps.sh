#!/usr/bin/env bash
# Install the Debian packages dbcrate's tests use, only if something is missing.
# age, zstd: format interop checks; util-linux (setpriv/runuser): drop root for PostgreSQL;
# redis-server/redis-tools: the Redis engine's tests;
# nodejs/npm: fetch the C2SP age test vectors (npm package cctv-age); mariadb-server/-client:
# the MySQL engine's tests (a private mariadbd) and its dump/restore tools;
# openssh-client (ssh-keygen): checking manifest signatures with stock tools;
# openssh-server: a private sshd for the sftp target tests;
# chromium: the control plane's browser test (Playwright drives Debian's chromium).
set -euo pipefail
need=()
command -v age >/dev/null || need+=(age)
command -v age-keygen >/dev/null || need+=(age)
command -v zstd >/dev/null || need+=(zstd)
command -v gzip >/dev/null || need+=(gzip)
command -v setpriv >/dev/null || command -v runuser >/dev/null || need+=(util-linux)
command -v npm >/dev/null || need+=(npm)
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v mariadb-dump >/dev/null || need+=(mariadb-client)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${need[*]}; run: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
