#!/usr/bin/env bash
# Installs the Debian packages swiftcompress needs (zlib to link, OpenBLAS and LAPACKE,
# loaded on the first matrix call), when any is missing (or the
# packages named as arguments: `make bench-llama` asks for cmake and g++).
# Uses sudo only when not root.
set -euo pipefail
if [ $# -gt 0 ]; then pkgs=("$@"); else pkgs=(libopenblas-dev liblapacke-dev zlib1g-dev); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
echo "installing: ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
