#!/usr/bin/env bash
# Install Debian tools by command name when missing: tools.sh kcat promtool redis-server
set -euo pipefail

declare -A PACKAGE=([kcat]=kcat [promtool]=prometheus [redis-server]=redis-server [redis-cli]=redis-tools)

missing=()
for cmd in "$@"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${PACKAGE[$cmd]:-$cmd}")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -eq 0 ]]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
  echo "tools.sh: error: need ${missing[*]} (apt-get install ${missing[*]}) but am not root and have no sudo" >&2
  exit 1
fi
command -v apt-get >/dev/null || { echo "tools.sh: error: need ${missing[*]}; no apt-get here to install them" >&2; exit 1; }
echo "==> installing ${missing[*]} with apt-get" >&2
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
