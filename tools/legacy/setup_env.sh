#!/bin/sh
# Build the authentic Stable Baselines 2 stack used to make tests/fixtures:
# Python 3.7, TensorFlow 1.15.5, stable-baselines 2.10.2, gym 0.17.3, protobuf 3.20.3,
# and mpi4py (needed by DDPG, TRPO, PPO1 and GAIL).
#
# usage: sh tools/legacy/setup_env.sh VENV_DIR      (default /tmp/sb2legacy)
#
# Idempotent: does nothing if VENV_DIR already has stable-baselines 2.10.2.
# Needs: a Python 3.7 interpreter (pyenv's versions/3.7.*, or python3.7 on PATH),
# PyPI access, and for mpi4py the MPI headers (Debian: apt-get install -y libopenmpi-dev).
set -e
VENV=${1:-/tmp/sb2legacy}

if [ -x "$VENV/bin/python" ] && \
   "$VENV/bin/python" -c "import pkg_resources as p, sys; sys.exit(p.get_distribution('stable-baselines').version != '2.10.2')" 2>/dev/null; then
    echo "legacy env already ready: $VENV (stable-baselines 2.10.2)"
    "$VENV/bin/python" -c "import mpi4py" 2>/dev/null || \
        echo "note: mpi4py missing in $VENV: DDPG, TRPO, PPO1, GAIL fixtures will fail (see below to add it)"
    exit 0
fi

PY37=""
if command -v pyenv >/dev/null 2>&1; then
    PY37=$(ls -d "$(pyenv root)"/versions/3.7.*/bin/python 2>/dev/null | sort -V | tail -1)
fi
[ -n "$PY37" ] || PY37=$(command -v python3.7 || true)
if [ -z "$PY37" ]; then
    echo "error: no Python 3.7 found (TensorFlow 1.15 needs Python <= 3.7)." >&2
    echo "       install one, e.g. 'pyenv install 3.7.16', then rerun." >&2
    exit 1
fi
echo "using $PY37"

"$PY37" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
# protobuf 3.20.3 matters: newer protobuf breaks TensorFlow 1.15 at import.
"$VENV/bin/pip" install -q "tensorflow==1.15.5" "stable-baselines==2.10.2" "gym==0.17.3" "protobuf==3.20.3"

if command -v mpicc >/dev/null 2>&1 || [ -e /usr/include/mpi.h ] || \
   ls /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h >/dev/null 2>&1; then
    "$VENV/bin/pip" install -q "mpi4py<4" || \
        echo "warning: 'pip install mpi4py<4' failed: DDPG, TRPO, PPO1, GAIL will be unavailable"
else
    echo "warning: MPI development files not found, so mpi4py was NOT installed."
    echo "         DDPG, TRPO, PPO1 and GAIL need it. Fix with:"
    echo "           apt-get install -y libopenmpi-dev && $VENV/bin/pip install 'mpi4py<4'"
fi

"$VENV/bin/python" -c "import stable_baselines, tensorflow; print('stable-baselines', stable_baselines.__version__, 'tensorflow', tensorflow.__version__)" 2>/dev/null | tail -1
echo "legacy env ready: $VENV"
