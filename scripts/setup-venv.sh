#!/usr/bin/env bash
# .venv with podlab installed editable, with its dev tools (ruff, jsonschema). Needs no
# root and no Docker: `make unit` and `make lint` run on it alone. Idempotent: pip runs
# again only when pyproject.toml changed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.stamp-install"

say() { printf 'setup: %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV" || {
        printf 'setup: ERROR: %s -m venv failed; install python3-venv (make setup does, as root)\n' \
            "$PYTHON" >&2
        exit 1
    }
fi
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
    say "pip install -e '.[dev]' into $VENV"
    "$VENV/bin/python" -m pip install -q -e '.[dev]'
    touch "$STAMP"
fi
