#!/usr/bin/env bash
# Set up everything pygeometry needs on a fresh Debian bookworm machine, and nothing twice:
#   1. Debian build dependencies of Caffe (apt, only the missing ones),
#   2. the project's Python environment .venv/ (pinned requirements.txt, pygeometry in develop mode),
#   3. Caffe (BVLC, Debian bullseye's source package + scripts/install/caffe-bookworm.patch), built CPU_ONLY
#      with the Python layer into a per-user cache keyed by Caffe version, patch hash and Python version,
#   4. the wiring: .venv sees pycaffe (a .pth file), and .venv/bin/caffe runs Caffe's tool with the venv's
#      packages and the repository on PYTHONPATH, so prototxt Python layers find pygeometry.
# Each step checks first and is a quick no-op when already done. A build is only used once its stamp file
# exists, and the stamp is written last, so an interrupted build is never mistaken for a finished one.
#
# Environment knobs:
#   PYGEOMETRY_CACHE   where Caffe is built (default ${XDG_CACHE_HOME:-$HOME/.cache}/pygeometry)
#   PYTHON             the interpreter for the venv (default: python3.11, else python3)
#   JOBS               parallel build jobs (default: nproc)
#   CAFFE_CMAKE_EXTRA  extra cmake flags; for a CUDA build on a GPU machine e.g.
#                      CAFFE_CMAKE_EXTRA="-DCPU_ONLY=OFF -DUSE_CUDNN=ON -DCUDA_ARCH_NAME=Auto"
#                      (needs nvidia-cuda-toolkit + cuDNN; untested here: these machines have no GPU)
set -euo pipefail
case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "setup.sh takes no arguments (see --help)" >&2; exit 2 ;;
esac

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
HERE=$REPO/scripts/install
VENV=$REPO/.venv
CAFFE_DEB_VERSION=1.0.0+git20180821.99bd997-8
PATCH=$HERE/caffe-bookworm.patch
JOBS=${JOBS:-$(nproc)}

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[setup] ERROR:\033[0m %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root to run: $* (no sudo found); run it as root and retry 'make test'"; fi
}

# ---------------------------------------------------------------------------------------------- 1. apt
APT_PACKAGES=(
  build-essential cmake dpkg-dev patch
  libboost-system-dev libboost-thread-dev libboost-filesystem-dev libboost-python-dev libboost-regex-dev
  libprotobuf-dev protobuf-compiler libgoogle-glog-dev libgflags-dev libhdf5-dev libopenblas-dev
  liblmdb-dev libsnappy-dev libopencv-dev
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  as_root apt-get update -q || die "apt-get update failed: is Debian's archive reachable? Retry 'make test' when it is."
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
    || die "apt-get install failed for: ${missing[*]}. Check the network to the Debian archive and retry."
fi

# ---------------------------------------------------------------------------------------------- 2. venv
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
REQ_HASH=$(cat requirements.txt setup.py | sha256sum | cut -c1-16)
VENV_STAMP=$VENV/.pygeometry-requirements-$REQ_HASH
if [ ! -f "$VENV_STAMP" ]; then
  say "creating/updating the Python environment $VENV with $PYTHON"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV" || die "could not create $VENV with $PYTHON"
  pip_q() {  # quiet pip; on failure show its log
    "$VENV/bin/python" -m pip install -q "$@" >"$VENV/pip.log" 2>&1 \
      || { grep -v "is ignored" "$VENV/pip.log" | tail -n 20 >&2
           die "pip install $* failed: is PyPI reachable? Retry 'make test' when it is."; }
  }
  pip_q --upgrade pip
  pip_q -r requirements.txt
  pip_q --no-deps -e .
  rm -f "$VENV"/.pygeometry-requirements-*
  touch "$VENV_STAMP"
fi
PY_TAG=$("$VENV/bin/python" -c 'import sys; print("py%d%d" % sys.version_info[:2])')

# ---------------------------------------------------------------------------------------------- 3. Caffe
PATCH_HASH=$( (cat "$PATCH"; echo "$CAFFE_DEB_VERSION $PY_TAG ${CAFFE_CMAKE_EXTRA:-}") | sha256sum | cut -c1-12)
CACHE=${PYGEOMETRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pygeometry}
CAFFE_HOME=$CACHE/caffe-$CAFFE_DEB_VERSION-$PY_TAG-$PATCH_HASH
CAFFE_STAMP=$CAFFE_HOME/.build-complete
if [ ! -f "$CAFFE_STAMP" ]; then
  say "building Caffe $CAFFE_DEB_VERSION into $CAFFE_HOME (a few minutes, once)"
  rm -rf "$CAFFE_HOME"
  mkdir -p "$CAFFE_HOME/apt/lists/partial" "$CAFFE_HOME/download"
  # A private deb-src list for bullseye on the mirror the system already uses; system sources untouched.
  MIRROR=$(grep -hE '^\s*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
  [ -n "$MIRROR" ] || MIRROR=$(grep -hE '^\s*deb\s' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
  echo "deb-src $MIRROR bullseye main" > "$CAFFE_HOME/apt/sources.list"
  APT_OPTS=(-o "Dir::Etc::SourceList=$CAFFE_HOME/apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
            -o "Dir::State::Lists=$CAFFE_HOME/apt/lists" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
  apt-get -q "${APT_OPTS[@]}" update >"$CAFFE_HOME/apt.log" 2>&1 \
    || die "could not read bullseye sources from $MIRROR (see $CAFFE_HOME/apt.log). Check the network and retry."
  (cd "$CAFFE_HOME/download" && apt-get -q "${APT_OPTS[@]}" source --download-only "caffe=$CAFFE_DEB_VERSION") \
    >>"$CAFFE_HOME/apt.log" 2>&1 || die "apt-get source caffe=$CAFFE_DEB_VERSION failed (see $CAFFE_HOME/apt.log)"
  (cd "$CAFFE_HOME/download" && dpkg-source -x "caffe_$CAFFE_DEB_VERSION.dsc" "$CAFFE_HOME/src") \
    >>"$CAFFE_HOME/apt.log" 2>&1 || die "dpkg-source could not verify/unpack the caffe source (see $CAFFE_HOME/apt.log)"
  (cd "$CAFFE_HOME/src" && patch -p1 --forward < "$PATCH") >"$CAFFE_HOME/patch.log" 2>&1 \
    || die "$PATCH did not apply to caffe $CAFFE_DEB_VERSION (see $CAFFE_HOME/patch.log)"
  PY_INC=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  PY_LIB=$("$VENV/bin/python" -c 'import sysconfig, os; print(os.path.join(sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")))')
  mkdir -p "$CAFFE_HOME/build"
  # shellcheck disable=SC2086
  (cd "$CAFFE_HOME/build" && cmake ../src -DCPU_ONLY=ON -DBLAS=Open -Dpython_version=3 -DBUILD_python=ON \
      -DBUILD_python_layer=ON -DUSE_OPENCV=ON -DUSE_LMDB=ON -DUSE_LEVELDB=OFF -DBUILD_docs=OFF \
      -DCMAKE_BUILD_TYPE=Release -DPYTHON_EXECUTABLE="$VENV/bin/python" -DPYTHON_INCLUDE_DIR="$PY_INC" \
      -DPYTHON_LIBRARY="$PY_LIB" ${CAFFE_CMAKE_EXTRA:-}) >"$CAFFE_HOME/cmake.log" 2>&1 \
    || die "cmake failed for Caffe (see $CAFFE_HOME/cmake.log): a missing build dependency? Retry 'make test'."
  (cd "$CAFFE_HOME/build" && make -j"$JOBS" caffe pycaffe caffe.bin) >"$CAFFE_HOME/make.log" 2>&1 \
    || { tail -n 30 "$CAFFE_HOME/make.log" >&2; die "building Caffe failed (full log: $CAFFE_HOME/make.log)"; }
  [ -f "$CAFFE_HOME/src/python/caffe/_caffe.so" ] || die "pycaffe was not built ($CAFFE_HOME/src/python/caffe/_caffe.so missing)"
  date -u +%FT%TZ > "$CAFFE_STAMP"
  say "Caffe built"
fi

# ---------------------------------------------------------------------------------------------- 4. wiring
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$CAFFE_HOME/src/python" > "$SITE/pycaffe.pth"
CAFFE_BIN=$CAFFE_HOME/build/tools/caffe
[ -x "$CAFFE_BIN" ] || CAFFE_BIN=$(find "$CAFFE_HOME/build" -name caffe.bin -type f | head -n1)
cat > "$VENV/bin/caffe.tmp" <<EOF
#!/usr/bin/env bash
# Caffe's command-line tool, wired to this venv's packages and the pygeometry repository (written by
# scripts/install/setup.sh). Python layers in a prototxt import from: the current directory, the repo, the venv.
export PYTHONPATH="\${PYTHONPATH:+\$PYTHONPATH:}\$PWD:$REPO:$SITE:$CAFFE_HOME/src/python"
# One OpenBLAS thread per core available, as scripts/train.py sets (see the reason there).
export OPENBLAS_NUM_THREADS="\${OPENBLAS_NUM_THREADS:-\$(nproc)}"
export GLOG_minloglevel="\${GLOG_minloglevel:-0}"
export GLOG_logtostderr="\${GLOG_logtostderr:-1}"  # log to the terminal, not to files in /tmp
exec "$CAFFE_BIN" "\$@"
EOF
chmod +x "$VENV/bin/caffe.tmp" && mv "$VENV/bin/caffe.tmp" "$VENV/bin/caffe"

"$VENV/bin/python" -c 'import caffe, pygeometry' 2>/dev/null \
  || { "$VENV/bin/python" -c 'import caffe, pygeometry'; die "the environment is incomplete: import caffe, pygeometry failed"; }
