#!/usr/bin/env bash
# Build (once) and install Horovod 0.28.1 for the TensorFlow in a given Python environment.
#
# Horovod's last release does not compile against TensorFlow 2.21 as published. Three fixes:
#   1. Debian's libhighwayhash-dev and libfarmhash-dev: TF 2.21's headers include them but the
#      wheel does not ship them.
#   2. horovod/tensorflow/xla_mpi_ops.cc includes five headers from tensorflow/compiler/xla/...,
#      which moved to xla/... ; the sdist is patched (each include is checked, loudly).
#   3. Build without build isolation, so the extension compiles against the installed TF.
# The wheel is cached OUTSIDE the repository, keyed by Horovod, TF and Python versions, so a
# second run only installs it.
#
# Usage: tools/build_horovod.sh [--python PY] [--gpu] [--no-mpi] [--force] [PY]
#   PY         Python interpreter of the target environment (default: <repo>/.venv/bin/python)
#   --no-mpi   Gloo only. By default Horovod is built with MPI too (Debian's Open MPI is installed),
#              so the original README's `mpiexec -n 8 python train.py ...` works as well as horovodrun.
#   --gpu      NCCL variant (HOROVOD_GPU_OPERATIONS=NCCL; needs CUDA + NCCL on the machine).
#              UNTESTED here: the development machine has no GPU. CPU collectives stay on Gloo.
#   --force    rebuild the wheel even if a cached one exists
# Environment:
#   HOROVOD_WHEEL_CACHE  wheel cache directory (default: $HOME/.cache/tfglow/horovod)
#   HOROVOD_VERSION      Horovod version to build (default: 0.28.1; the patches target 0.28.1)
#   MAKEFLAGS            passed to make (default: -j<number of cores>; Horovod itself uses -j8)
set -euo pipefail

log() { printf '[build_horovod] %s\n' "$*" >&2; }
die() { printf '[build_horovod] ERROR: %s\n' "$*" >&2; exit 1; }

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$REPO_DIR/.venv/bin/python"
GPU=0
MPI=1
FORCE=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --python) [[ $# -ge 2 ]] || die "--python needs an argument"; PY="$2"; shift 2 ;;
    --gpu) GPU=1; shift ;;
    --no-mpi) MPI=0; shift ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option: $1 (see --help)" ;;
    *) PY="$1"; shift ;;
  esac
done

HVD_VERSION="${HOROVOD_VERSION:-0.28.1}"
CACHE_ROOT="${HOROVOD_WHEEL_CACHE:-$HOME/.cache/tfglow/horovod}"

[[ -x "$PY" ]] || die "python interpreter not found or not executable: $PY"
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"   # absolute, but keep the venv symlink
BIN_DIR="$(dirname "$PY")"

# ---------------------------------------------------------------- versions and cache key
TF_VERSION="$(TF_CPP_MIN_LOG_LEVEL=3 "$PY" -c 'import tensorflow as tf; print(tf.__version__)' 2>/dev/null)" \
  || die "TensorFlow is not importable with $PY; install the requirements first"
PY_TAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
VARIANT=cpu; [[ $GPU -eq 1 ]] && VARIANT=nccl
[[ $MPI -eq 1 ]] && VARIANT="${VARIANT}-mpi"
KEY="horovod-${HVD_VERSION}_tf-${TF_VERSION}_${PY_TAG}_${VARIANT}"
CACHE_DIR="$CACHE_ROOT/$KEY"
case "$CACHE_DIR/" in
  "$REPO_DIR"/*) die "wheel cache $CACHE_DIR is inside the repository; set HOROVOD_WHEEL_CACHE elsewhere" ;;
esac
log "python $PY ($PY_TAG), tensorflow $TF_VERSION, horovod $HVD_VERSION, variant $VARIANT"
log "wheel cache: $CACHE_DIR"

# ---------------------------------------------------------------- helpers
as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@";
  elif command -v sudo >/dev/null 2>&1; then sudo "$@";
  else die "need root (or sudo) to run: $*"; fi
}

apt_missing() {  # prints the packages among "$@" that are not installed
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || printf '%s\n' "$p"
  done
}

VERIFY_PY='
import horovod, horovod.tensorflow as hvd
hvd.init()  # loads the compiled TF op library: also catches a TF ABI mismatch
assert hvd.size() == 1, hvd.size()
assert hvd.gloo_built(), "horovod was built without Gloo"
import os
assert hvd.mpi_built() or os.environ.get("WANT_MPI") != "1", "horovod was built without MPI"
print(f"[build_horovod] horovod {horovod.__version__} imports; gloo_built={hvd.gloo_built()} "
      f"mpi_built={hvd.mpi_built()} nccl_built={hvd.nccl_built()}")
'
verify_install() {  # quiet unless it fails
  local out
  if ! out="$(WANT_MPI=$MPI TF_CPP_MIN_LOG_LEVEL=3 "$PY" -c "$VERIFY_PY" 2>&1)"; then
    printf '%s\n' "$out" | tail -n 20 >&2
    return 1
  fi
  printf '%s\n' "$out" | grep '^\[build_horovod\]' >&2 || true
  [[ -x "$BIN_DIR/horovodrun" ]] || { log "horovodrun missing from $BIN_DIR"; return 1; }
}

install_wheel() {
  local whl="$1"
  log "installing $(basename "$whl")"
  # Runtime deps (cloudpickle, psutil, pyyaml, packaging) come from the package index.
  "$PY" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$whl"
  "$PY" -m pip install --quiet --disable-pip-version-check "$whl"
  verify_install || die "horovod installed from $whl but does not import / run"
  log "done: horovodrun is $BIN_DIR/horovodrun"
}

# Open MPI is a run-time dependency of an MPI build (libmpi), so it is installed even when the
# wheel comes from the cache.
ensure_debs() {
  local missing
  mapfile -t missing < <(apt_missing "$@")
  if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}
if [[ $MPI -eq 1 ]]; then
  command -v dpkg-query >/dev/null 2>&1 || die "this script expects a Debian/Ubuntu system (dpkg/apt)"
  ensure_debs openmpi-bin libopenmpi-dev
fi

# ---------------------------------------------------------------- fast paths
if [[ $FORCE -eq 0 ]]; then
  installed="$("$PY" -m pip show horovod 2>/dev/null | sed -n 's/^Version: //p' || true)"
  if [[ "$installed" == "$HVD_VERSION" ]] && verify_install 2>/dev/null; then
    log "horovod $HVD_VERSION already installed and working; nothing to do"
    exit 0
  fi
fi
shopt -s nullglob
cached=("$CACHE_DIR"/horovod-"$HVD_VERSION"-*.whl)
shopt -u nullglob
if [[ $FORCE -eq 0 && ${#cached[@]} -gt 0 ]]; then
  log "found cached wheel, skipping the build"
  install_wheel "${cached[0]}"
  exit 0
fi

# ---------------------------------------------------------------- system packages
command -v dpkg-query >/dev/null 2>&1 || die "this script expects a Debian/Ubuntu system (dpkg/apt)"
need=(libhighwayhash-dev libfarmhash-dev)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
mapfile -t missing < <(apt_missing "${need[@]}")
if [[ ${#missing[@]} -gt 0 ]]; then
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  log "Debian packages present: ${need[*]}"
fi
cmake_version="$(cmake --version | sed -n 's/^cmake version \([0-9.]*\).*/\1/p')"
"$PY" - "$cmake_version" <<'EOF' || die "cmake >= 3.13 is needed (found ${cmake_version:-none})"
import sys
v = tuple(int(x) for x in sys.argv[1].split(".")[:2])
sys.exit(0 if v >= (3, 13) else 1)
EOF
for h in /usr/include/highwayhash/highwayhash.h /usr/include/farmhash.h; do
  [[ -f "$h" ]] || die "expected header $h after installing the Debian packages"
done

# Horovod's setup.py lists these as setup_requires for bdist_wheel; without build isolation
# they must already be importable (otherwise setuptools tries the deprecated easy_install path).
log "installing Horovod's build-time python deps into the target env"
"$PY" -m pip install --quiet --disable-pip-version-check cloudpickle psutil pyyaml packaging

# ---------------------------------------------------------------- fetch and patch the sdist
WORK="$(mktemp -d -t tfglow-horovod-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
log "downloading the horovod $HVD_VERSION sdist"
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
  "horovod==$HVD_VERSION" -d "$WORK/dl"
shopt -s nullglob
sdists=("$WORK"/dl/horovod-"$HVD_VERSION".tar.gz)
shopt -u nullglob
[[ ${#sdists[@]} -eq 1 ]] || die "sdist horovod-$HVD_VERSION.tar.gz not downloaded"
tar -xzf "${sdists[0]}" -C "$WORK"
SRC="$WORK/horovod-$HVD_VERSION"
XLA_CC="$SRC/horovod/tensorflow/xla_mpi_ops.cc"
[[ -f "$XLA_CC" ]] || die "missing $XLA_CC in the sdist"

patch_include() {  # old new: replace exactly one #include line, fail if not found
  local old="$1" new="$2"
  local n
  n="$(grep -c "^#include \"$old\"" "$XLA_CC" || true)"
  if [[ "$n" -ne 1 ]]; then
    if grep -q "^#include \"$new\"" "$XLA_CC"; then
      log "include already at new location: $new"; return 0
    fi
    die "include \"$old\" found $n times in xla_mpi_ops.cc (expected 1); the patch does not fit this sdist"
  fi
  sed -i "s|^#include \"$old\"|#include \"$new\"|" "$XLA_CC"
  grep -q "^#include \"$new\"" "$XLA_CC" || die "patching $old -> $new failed"
  log "patched include: $old -> $new"
}
patch_include tensorflow/compiler/xla/client/xla_builder.h                  xla/hlo/builder/xla_builder.h
patch_include tensorflow/compiler/xla/service/custom_call_target_registry.h xla/service/custom_call_target_registry.h
patch_include tensorflow/compiler/xla/service/hlo.pb.h                      xla/service/hlo.pb.h
patch_include tensorflow/compiler/xla/shape.h                               xla/shape.h
patch_include tensorflow/compiler/xla/xla_data.pb.h                         xla/xla_data.pb.h
if grep -n 'tensorflow/compiler/xla/' "$XLA_CC"; then
  die "xla_mpi_ops.cc still includes tensorflow/compiler/xla/ headers (listed above)"
fi

# ---------------------------------------------------------------- build the wheel
export HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_PYTORCH=1 \
  HOROVOD_WITHOUT_MXNET=1
if [[ $MPI -eq 1 ]]; then
  # CPU collectives: MPI under mpiexec, Gloo under horovodrun --gloo (which asks for it).
  export HOROVOD_WITH_MPI=1
else
  export HOROVOD_WITHOUT_MPI=1 HOROVOD_CPU_OPERATIONS=GLOO
fi
if [[ $GPU -eq 1 ]]; then
  export HOROVOD_GPU_OPERATIONS=NCCL
  log "GPU variant: HOROVOD_GPU_OPERATIONS=NCCL (needs CUDA and NCCL; untested on the dev machine)"
fi
export MAKEFLAGS="${MAKEFLAGS:--j$(nproc)}"
# Build against the target env's tools (cmake is found on PATH; the venv's bin comes first).
export PATH="$BIN_DIR:$PATH"
log "building the wheel (MAKEFLAGS=$MAKEFLAGS; takes ~4 min on 2 cores); log: $WORK/build.log"
start=$SECONDS
if ! "$PY" -m pip wheel --no-build-isolation --no-deps --disable-pip-version-check -v \
      -w "$WORK/wheel" "$SRC" >"$WORK/build.log" 2>&1; then
  tail -n 60 "$WORK/build.log" >&2
  cp "$WORK/build.log" "${TMPDIR:-/tmp}/tfglow-horovod-build.log" || true
  die "pip wheel failed (last 60 lines above; full log kept in ${TMPDIR:-/tmp}/tfglow-horovod-build.log)"
fi
log "wheel built in $((SECONDS - start)) s"
shopt -s nullglob
built=("$WORK"/wheel/horovod-"$HVD_VERSION"-*.whl)
shopt -u nullglob
[[ ${#built[@]} -eq 1 ]] || die "expected one horovod wheel in $WORK/wheel"

mkdir -p "$CACHE_DIR"
rm -f "$CACHE_DIR"/horovod-*.whl
cp "${built[0]}" "$CACHE_DIR/.tmp.$$" && mv "$CACHE_DIR/.tmp.$$" "$CACHE_DIR/$(basename "${built[0]}")"
log "cached $CACHE_DIR/$(basename "${built[0]}")"
install_wheel "$CACHE_DIR/$(basename "${built[0]}")"
