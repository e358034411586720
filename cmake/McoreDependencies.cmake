# Third-party dependencies. Everything comes from Debian packages installed by scripts/setup;
# OpenBLAS is not linked at all: mcore/ops/cpu/blas.cpp loads the OpenMP variant at run time so
# that it can pick the right CPU kernel before OpenBLAS initializes.
find_package(Threads REQUIRED)
find_package(OpenMP REQUIRED COMPONENTS CXX)
# The mpi communication backend (mcore/comm/mpi_backend.*): Debian's OpenMPI. The CXX component
# (mcore only calls the C API) so that CXX-only consumers of find_package(mcore) can find it too.
set(MPI_CXX_SKIP_MPICXX ON)  # no deprecated C++ bindings (libmpi_cxx)
find_package(MPI REQUIRED COMPONENTS CXX)

# Tokenizers: nlohmann-json (header-only) for vocab.json / tokenizer.json, and Debian's
# libsentencepiece for SentencePieceTokenizer (no CMake config ships with it: pkg-config, then a
# plain library search).
find_package(nlohmann_json 3 REQUIRED)
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(MCORE_SENTENCEPIECE QUIET sentencepiece)
endif()
find_library(MCORE_SENTENCEPIECE_LIBRARY sentencepiece HINTS ${MCORE_SENTENCEPIECE_LIBRARY_DIRS} REQUIRED)
find_path(MCORE_SENTENCEPIECE_INCLUDE sentencepiece_processor.h HINTS ${MCORE_SENTENCEPIECE_INCLUDE_DIRS} REQUIRED)

find_package(GTest QUIET)
find_package(benchmark QUIET)

# One interpreter for every reference script: the venv scripts/setup makes over /usr/bin/python3
# (the only Python that sees Debian's python3-torch). Re-evaluated at every configure (not
# cached), so a build configured before the venv existed picks it up later.
if(NOT MCORE_PYTHON)
  if(EXISTS "${CMAKE_SOURCE_DIR}/.venv/bin/python")
    set(MCORE_PYTHON "${CMAKE_SOURCE_DIR}/.venv/bin/python")
  else()
    set(MCORE_PYTHON "/usr/bin/python3")
  endif()
endif()
message(STATUS "mcore: reference-test Python ${MCORE_PYTHON}")
# transformers, for the checkpoint-conversion tests: its own venv (.venv-hf, scripts/setup),
# as it conflicts with the tokenizers pin of .venv. Empty when absent: those tests then fail
# saying to run scripts/setup.
if(NOT MCORE_HF_PYTHON)
  if(EXISTS "${CMAKE_SOURCE_DIR}/.venv-hf/bin/python")
    set(MCORE_HF_PYTHON "${CMAKE_SOURCE_DIR}/.venv-hf/bin/python")
  else()
    set(MCORE_HF_PYTHON "")
  endif()
endif()
message(STATUS "mcore: transformers Python ${MCORE_HF_PYTHON}")

# CUDA backend: optional, on when nvcc is found.
set(MCORE_HAVE_CUDA OFF)
if(MCORE_CUDA)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 80 90)
    endif()
    enable_language(CUDA)
    # CMake < 3.26 does not know nvcc's C++20 flag, and libmcore's cxx_std_20 requirement
    # applies to its .cu sources too.
    if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    endif()
    find_package(CUDAToolkit REQUIRED)
    # NCCL and cuDNN have no CUDA:: targets: look for them next to the toolkit.
    find_library(MCORE_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}/lib64 ${CUDAToolkit_LIBRARY_ROOT}/lib
                 /usr/lib/x86_64-linux-gnu)
    find_path(MCORE_NCCL_INCLUDE nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/include)
    find_library(MCORE_CUDNN_LIBRARY cudnn HINTS ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}/lib64 ${CUDAToolkit_LIBRARY_ROOT}/lib
                 /usr/lib/x86_64-linux-gnu)
    set(MCORE_HAVE_CUDA ON)
    message(STATUS "mcore: CUDA backend ON (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, archs ${CMAKE_CUDA_ARCHITECTURES}, "
                   "nccl=${MCORE_NCCL_LIBRARY}, cudnn=${MCORE_CUDNN_LIBRARY})")
  else()
    message(STATUS "mcore: CUDA backend OFF (nvcc not found)")
  endif()
else()
  message(STATUS "mcore: CUDA backend OFF (-DMCORE_CUDA=OFF)")
endif()
