#!/usr/bin/env bash
# Install everything the test suite needs (idempotent) and run the whole suite.
#   - Debian packages for a virtual X display with OpenGL (napari's canvas), when missing (needs root);
#   - a virtual environment .venv with the CPU build of PyTorch 2.13.0, then the package with its test extras;
#   - ruff: lint and format check of src, tests, scripts and benchmarks (settings in pyproject.toml);
#   - the suite under xvfb-run (napari needs OpenGL; offscreen Qt alone fails when an image layer is added).
# Extra arguments are passed to pytest, e.g.  bash scripts/run_tests.sh -k edges
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0
libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0
libxcb-cursor0 libdbus-1-3 libfontconfig1"
missing=""
for pkg in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    echo "installing Debian packages:$missing"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"

.venv/bin/ruff check src tests scripts benchmarks
.venv/bin/ruff format --check src tests scripts benchmarks

export NAPARI_ENSURE_PLUGIN_MAIN_THREAD=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python -m pytest "$@"
