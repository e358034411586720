# Sourced THERE (on the GPU machine, from the repository root) by scripts that run what
# scripts/device/build_gpu built into build-gpu: the unpacked Debian packages of
# scripts/device/fetch_debs (.device/root) on the library path, the relocated OpenMPI, and
# NCCL next to the toolkit or from PyTorch's wheel (NCCL_DIR is then set).
ROOT=$PWD/.device/root
if [ ! -d "$ROOT/usr" ]; then
  echo "gpu_env.sh: $ROOT is missing: carry .device and run scripts/device/build_gpu first" >&2
  return 1 2>/dev/null || exit 1
fi
export OPAL_PREFIX=$ROOT/usr
export PATH=$ROOT/usr/bin:$PATH
export LD_LIBRARY_PATH=$ROOT/usr/lib/x86_64-linux-gnu:$ROOT/usr/lib/x86_64-linux-gnu/openmpi/lib:${LD_LIBRARY_PATH:-}
export MCORE_OPENBLAS=$ROOT/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if ! ls /usr/local/cuda/lib*/libnccl.so* >/dev/null 2>&1; then
  NCCL_DIR=$(python3 -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))' \
    2>/dev/null || true)
  if [ -n "$NCCL_DIR" ]; then export LD_LIBRARY_PATH=$NCCL_DIR/lib:$LD_LIBRARY_PATH; fi
fi
