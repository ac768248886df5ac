#!/usr/bin/env bash
# Gradescope runs this once, as root on its Ubuntu image, when it builds the autograder
# (written by `nicelab release gradescope`). It installs Python 3.11 or 3.12 if the image has
# neither, a virtual environment in $ROOT/venv with the pinned dependencies of
# requirements.txt, and imports TensorFlow once so that the first submission starts warm. It
# also creates the unprivileged user nicelab-student (no home, no login): where bubblewrap cannot
# run, the student's code runs as that user, never as root.
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
export DEBIAN_FRONTEND=noninteractive

if ! id -u nicelab-student >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
        nicelab-student
fi

PY=""
for candidate in python3.12 python3.11 python3; do  # one that runs and is 3.11 or newer
    if "$candidate" -c "import sys; sys.exit(sys.version_info < (3, 11))" >/dev/null 2>&1; then
        PY="$candidate"
        break
    fi
done
if [ -z "$PY" ]; then
    apt-get update -qq
    apt-get install -y -qq python3.11 python3.11-venv >/dev/null
    PY=python3.11
fi
if ! "$PY" -c "import ensurepip, venv" >/dev/null 2>&1; then  # Debian and Ubuntu split venv out
    apt-get update -qq
    apt-get install -y -qq "python$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv" >/dev/null
fi

"$PY" -m venv "$ROOT/venv"
"$ROOT/venv/bin/python" -m pip install --quiet --upgrade pip
"$ROOT/venv/bin/python" -m pip install --quiet -r "$ROOT/source/requirements.txt"
cd "$ROOT/source"
PYTHONPATH="$ROOT/source" "$ROOT/venv/bin/python" -c "from nicelab.core.quiet import import_tensorflow; import_tensorflow()"
echo "nicelab autograder ready: $("$ROOT/venv/bin/python" --version)"
