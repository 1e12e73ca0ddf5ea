#!/usr/bin/env bash
# Create or refresh the project environment; safe to run again (a second run does nothing costly).
#  1. Debian packages the suite needs (apt-get when run as root, otherwise a message saying what to install)
#  2. .venv with the pinned requirements (reinstalled only when requirements.txt or pyproject.toml change)
#  3. DVC configured for offline use (no analytics, no update check, caches inside the repository)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# Debian packages used by later stages: espeak-ng renders the corpus's speech, postgresql serves Dejavu.
DEBIAN_PACKAGES=(ca-certificates espeak-ng postgresql)
if ! "$PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1; then
  DEBIAN_PACKAGES+=(python3-venv)
fi

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# Optional: qemu-user runs the cross-CPU tests (the corpus's bytes on emulated CPUs); they skip without it.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
  && ! dpkg-query -W -f='${Status}' qemu-user 2>/dev/null | grep -q "install ok installed"; then
  missing+=(qemu-user)
fi
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: install them as root: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

stamp=.venv/.ausil-requirements.sha256
want=$(cat requirements.txt requirements-nodeps.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing pinned Python packages (torch==2.11.0 + torchaudio==2.11.0 and the rest)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  # Dejavu as published; its metadata asks for PyAudio and MySQL drivers it does not need here
  .venv/bin/python -m pip install -q --no-deps -r requirements-nodeps.txt
  .venv/bin/python -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
else
  echo "setup: .venv is up to date"
fi

# DVC (analytics and update checks are off in the committed .dvc/config): site cache inside the clone
.venv/bin/dvc config --local core.site_cache_dir "$(pwd)/.dvc/tmp/site-cache" >/dev/null
