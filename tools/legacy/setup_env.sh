#!/bin/sh
# Build an authentic Stable Baselines 2 stack used to make tests/fixtures:
# Python 3.7, TensorFlow 1.15.5, protobuf 3.20.3, mpi4py (DDPG, TRPO, PPO1, GAIL need it),
# and one stable-baselines RELEASE with the gym and cloudpickle that were current when
# that release came out (they decide how spaces and functions are pickled into the file).
#
# usage: sh tools/legacy/setup_env.sh VENV_DIR [RELEASE]
#        (defaults: /tmp/sb2legacy, 2.10.2; one venv per release, e.g. /tmp/sb2-2.5.1)
#
# Releases (see tools/legacy/README.md, "On-disk format eras"):
#   2.10.2  zip (+ cloudpickle=True pkl)   gym 0.17.3  cloudpickle as gym 0.17.3 pins (1.6.0)
#   2.8.0   first zip release              gym 0.14.0  cloudpickle 1.2.2
#   2.7.0   pkl, named OrderedDict, TD3    gym 0.14.0  cloudpickle 1.2.1
#   2.6.0   first named OrderedDict pkl    gym 0.12.5  cloudpickle 1.2.1
#   2.5.1   pkl, unnamed list (+obs_rms)   gym 0.12.1  cloudpickle 0.8.1
#   2.4.1   pkl, unnamed list              gym 0.11.0  cloudpickle 0.7.0
#   2.3.0   pkl, unnamed list, no kwargs   gym 0.10.9  cloudpickle 0.6.1
#   2.2.1   the same era as 2.3.0          gym 0.10.9  cloudpickle 0.6.1
#
# Idempotent: does nothing if VENV_DIR already has that stable-baselines release.
# Needs: a Python 3.7 interpreter (pyenv's versions/3.7.*, or python3.7 on PATH),
# PyPI access, and for mpi4py the MPI headers (Debian: apt-get install -y libopenmpi-dev).
set -e
VENV=${1:-/tmp/sb2legacy}
RELEASE=${2:-2.10.2}

case "$RELEASE" in
    2.10.2) PINS="gym==0.17.3" ;;
    2.8.0)  PINS="gym==0.14.0 cloudpickle==1.2.2" ;;
    2.7.0)  PINS="gym==0.14.0 cloudpickle==1.2.1" ;;
    2.6.0)  PINS="gym==0.12.5 cloudpickle==1.2.1" ;;
    2.5.1)  PINS="gym==0.12.1 cloudpickle==0.8.1" ;;
    2.4.1)  PINS="gym==0.11.0 cloudpickle==0.7.0" ;;
    2.3.0|2.2.1) PINS="gym==0.10.9 cloudpickle==0.6.1" ;;
    *) echo "error: no pins for stable-baselines $RELEASE (known: 2.10.2 2.8.0 2.7.0 2.6.0 2.5.1 2.4.1 2.3.0 2.2.1)" >&2
       exit 2 ;;
esac

if [ -x "$VENV/bin/python" ] && \
   "$VENV/bin/python" -c "import pkg_resources as p, sys; sys.exit(p.get_distribution('stable-baselines').version != '$RELEASE')" 2>/dev/null; then
    echo "legacy env already ready: $VENV (stable-baselines $RELEASE)"
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
echo "using $PY37 for stable-baselines $RELEASE ($PINS)"

"$PY37" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip

HAVE_MPI=""
if command -v mpicc >/dev/null 2>&1 || [ -e /usr/include/mpi.h ] || \
   ls /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h >/dev/null 2>&1; then
    HAVE_MPI=1
fi
case "$RELEASE" in
    # releases before 2.8 require mpi4py themselves: pin it here, or pip builds mpi4py 4 from source
    2.[2-7].*) [ -n "$HAVE_MPI" ] && PINS="$PINS mpi4py<4" ;;
esac
# protobuf 3.20.3 matters: newer protobuf breaks TensorFlow 1.15 at import.
# shellcheck disable=SC2086  # PINS is a list of requirements
"$VENV/bin/pip" install -q "tensorflow==1.15.5" "stable-baselines==$RELEASE" "protobuf==3.20.3" $PINS

if [ -n "$HAVE_MPI" ]; then
    "$VENV/bin/pip" install -q "mpi4py<4" || \
        echo "warning: 'pip install mpi4py<4' failed: DDPG, TRPO, PPO1, GAIL will be unavailable"
else
    echo "warning: MPI development files not found, so mpi4py was NOT installed."
    echo "         DDPG, TRPO, PPO1 and GAIL need it. Fix with:"
    echo "           apt-get install -y libopenmpi-dev && $VENV/bin/pip install 'mpi4py<4'"
fi

"$VENV/bin/python" -c "import stable_baselines, tensorflow; print('stable-baselines', stable_baselines.__version__, 'tensorflow', tensorflow.__version__)" 2>/dev/null | tail -1
echo "legacy env ready: $VENV"
