#!/usr/bin/env bash
# One-time set-up, safe to rerun: Debian packages (data set, cross compiler, qemu) when
# this machine can install them, then a virtual environment in .venv with hakd installed.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS="dataset-fashion-mnist gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user"
missing=""
for pkg in $DEBS; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages:$missing"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null) \
      || echo "setup: WARNING: could not install$missing; tests that need them will be skipped with a reason"
  elif command -v sudo >/dev/null; then
    echo "setup: installing Debian packages with sudo:$missing"
    (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null) \
      || echo "setup: WARNING: could not install$missing; tests that need them will be skipped with a reason"
  else
    echo "setup: WARNING: cannot install$missing (not root, no sudo)."
    echo "       Fashion-MNIST: ask an administrator for 'apt-get install dataset-fashion-mnist',"
    echo "       or pass --data-root to a folder with its four IDX .gz files."
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.hakd-setup-$(cat setup.py | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  # torch first and pinned: it comes from the CPU wheel on this machine's disk.
  .venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev,rpc]"
  rm -f .venv/.hakd-setup-*
  touch "$stamp"
fi
