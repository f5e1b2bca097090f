# The CUDA backend (included from the top-level CMakeLists.txt when KL_CUDA is AUTO or ON).
#
# Finds nvcc (CUDACXX, PATH, or /usr/local/cuda/bin) and checks that it is CUDA 12 or newer (C++20
# device code), then cuBLASLt and NCCL: KL_NCCL_ROOT when given (a folder holding include/nccl.h and
# lib/libnccl.so*, such as the nvidia-nccl-cu13 wheel's), else the toolkit's and the system's
# folders, else the wheel python3 can import (`nvidia.nccl`). Sets KL_CUDA_ENABLED and defines
# kl_add_cuda_backend(target), which compiles the .cu kernels for sm_90 (H100/H200) plus compute_90
# PTX, adds the CUDA host sources to `target` and links cudart, cuBLASLt and NCCL.
# KL_CUDA=ON stops with a message when anything is missing; AUTO builds the CPU backend alone.
# Nothing here needs a GPU: CI compiles all of it on machines without one.

set(KL_NCCL_ROOT "" CACHE PATH
    "NCCL's folder (include/nccl.h, lib/libnccl.so*); empty: the toolkit, the system, then python3's nvidia.nccl wheel")

# AUTO: a message and the CPU backend alone; ON: stop. The arguments are the sentence, in pieces
# (no semicolons: CMake splits lists there). A macro, so that return() leaves this file.
macro(kl_cuda_unavailable)
  string(JOIN "" kl_why ${ARGV})
  if(KL_CUDA STREQUAL "ON")
    message(FATAL_ERROR "KL_CUDA=ON: ${kl_why}")
  endif()
  message(WARNING "kilolayer: ${kl_why}; building the CPU backend only (KL_CUDA=AUTO)")
  return()
endmacro()

# --- nvcc, and its version before CMake compiles anything with it ---
if(DEFINED CMAKE_CUDA_COMPILER)
  set(kl_nvcc "${CMAKE_CUDA_COMPILER}")
elseif(DEFINED ENV{CUDACXX})
  set(kl_nvcc "$ENV{CUDACXX}")
else()
  find_program(kl_nvcc nvcc PATHS /usr/local/cuda/bin NO_CACHE)
endif()
if(NOT kl_nvcc)
  if(KL_CUDA STREQUAL "ON")
    message(FATAL_ERROR "KL_CUDA=ON but no CUDA compiler (nvcc) was found: install the CUDA toolkit, "
                        "put nvcc on PATH or set CUDACXX, or configure with -DKL_CUDA=OFF")
  endif()
  message(STATUS "kilolayer: nvcc not found; building the CPU backend only (KL_CUDA=AUTO)")
  return()
endif()
# C++20 in device code needs nvcc 12. An older one (Debian bookworm's nvidia-cuda-toolkit is 11.8)
# rejects -std=c++20, and often the host compiler too, which would fail the whole configure.
execute_process(COMMAND "${kl_nvcc}" --version OUTPUT_VARIABLE kl_nvcc_banner ERROR_QUIET
                RESULT_VARIABLE kl_nvcc_status)
if(NOT kl_nvcc_status EQUAL 0 OR NOT kl_nvcc_banner MATCHES "release ([0-9]+)\\.([0-9]+)")
  kl_cuda_unavailable("cannot run ${kl_nvcc} --version")
endif()
set(kl_nvcc_version "${CMAKE_MATCH_1}.${CMAKE_MATCH_2}")
if(kl_nvcc_version VERSION_LESS 12.0)
  kl_cuda_unavailable("${kl_nvcc} is CUDA ${kl_nvcc_version}, but kilolayer's device code is C++20, which needs "
                      "CUDA 12 or newer (point CUDACXX at a newer nvcc, or configure with -DKL_CUDA=OFF)")
endif()
if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
  set(ENV{CUDACXX} "${kl_nvcc}")
endif()
include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  kl_cuda_unavailable("${kl_nvcc} (CUDA ${kl_nvcc_version}) cannot compile a test program (see CMakeFiles/CMakeError.log)")
endif()

# Hopper only: sm_90 machine code plus compute_90 PTX for newer GPUs to JIT. One architecture keeps
# nvcc's share of a clean build small.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES "90-real;90-virtual")
endif()
enable_language(CUDA)
set(CMAKE_CUDA_FLAGS_RELEASE "-O3 -DNDEBUG")
find_package(CUDAToolkit REQUIRED)
# C++20 device code. CMake 3.25 predates nvcc's C++20 flag (its CUDA20 dialect is empty), and a
# target with CXX_STANDARD 20 asks for it: teach it the flag.
if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_COMPILE_FEATURES cuda_std_20)
  list(APPEND CMAKE_CUDA_COMPILE_FEATURES cuda_std_20)
endif()
set(CMAKE_CUDA_STANDARD 20)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
set(CMAKE_CUDA_EXTENSIONS OFF)

# --- NCCL. A wheel ships lib/libnccl.so.2 and no unversioned libnccl.so: ask for both names. ---
set(kl_nccl_names nccl libnccl.so.2)
if(KL_NCCL_ROOT)
  find_path(KL_NCCL_INCLUDE_DIR nccl.h PATHS "${KL_NCCL_ROOT}" PATH_SUFFIXES include NO_DEFAULT_PATH)
  find_library(KL_NCCL_LIBRARY NAMES ${kl_nccl_names} PATHS "${KL_NCCL_ROOT}" PATH_SUFFIXES lib lib64
               NO_DEFAULT_PATH)
else()
  find_path(KL_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} PATH_SUFFIXES include)
  find_library(KL_NCCL_LIBRARY NAMES ${kl_nccl_names} HINTS ${CUDAToolkit_LIBRARY_DIR} PATH_SUFFIXES lib lib64)
  if(NOT KL_NCCL_INCLUDE_DIR OR NOT KL_NCCL_LIBRARY)
    # pip's nvidia-nccl-cu12/cu13 (what PyTorch uses): site-packages/nvidia/nccl/{include,lib}.
    find_program(kl_python3 python3 NO_CACHE)
    if(kl_python3)
      execute_process(COMMAND "${kl_python3}" -c "import nvidia.nccl as m; print(list(m.__path__)[0])"
                      OUTPUT_VARIABLE kl_nccl_wheel OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET
                      RESULT_VARIABLE kl_python_status)
      if(kl_python_status EQUAL 0 AND IS_DIRECTORY "${kl_nccl_wheel}")
        message(STATUS "kilolayer: looking for NCCL in ${kl_python3}'s nvidia.nccl wheel: ${kl_nccl_wheel}")
        find_path(KL_NCCL_INCLUDE_DIR nccl.h PATHS "${kl_nccl_wheel}" PATH_SUFFIXES include NO_DEFAULT_PATH)
        find_library(KL_NCCL_LIBRARY NAMES ${kl_nccl_names} PATHS "${kl_nccl_wheel}" PATH_SUFFIXES lib
                     NO_DEFAULT_PATH)
      endif()
    endif()
  endif()
endif()
if(NOT TARGET CUDA::cublasLt)
  kl_cuda_unavailable("cuBLASLt not found in the CUDA toolkit (${CUDAToolkit_LIBRARY_DIR})")
endif()
if(NOT KL_NCCL_INCLUDE_DIR OR NOT KL_NCCL_LIBRARY)
  kl_cuda_unavailable("NCCL not found (nccl.h: ${KL_NCCL_INCLUDE_DIR}, libnccl: ${KL_NCCL_LIBRARY}): "
                      "set -DKL_NCCL_ROOT=<folder with include/nccl.h and lib/libnccl.so*>, e.g. "
                      "site-packages/nvidia/nccl of the pip package nvidia-nccl-cu13")
endif()

set(KL_CUDA_ENABLED ON)
message(STATUS "kilolayer: CUDA backend on (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures "
               "${CMAKE_CUDA_ARCHITECTURES}, NCCL ${KL_NCCL_LIBRARY})")

function(kl_add_cuda_backend target)
  # The kernels: an object library of their own, so that none of the C++ targets' flags
  # (-march=native, OpenMP, MPI) reach nvcc; its objects go into `target`'s archive. -lineinfo maps
  # SASS to source lines for compute-sanitizer and Nsight Compute, at no cost in speed.
  file(GLOB kernels CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/kernels/cuda/*.cu)
  add_library(kl_cuda_kernels OBJECT ${kernels})
  target_include_directories(kl_cuda_kernels PRIVATE ${CMAKE_SOURCE_DIR})
  target_compile_options(kl_cuda_kernels PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo --expt-relaxed-constexpr -Xcompiler=-Wall,-Wextra>)
  target_link_libraries(kl_cuda_kernels PRIVATE CUDA::cudart)
  # Host code that calls CUDA, cuBLASLt and NCCL (plain C++, compiled by the C++ compiler).
  file(GLOB host CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/kernels/cuda/*.cpp ${CMAKE_SOURCE_DIR}/src/cuda/*.cpp
       ${CMAKE_SOURCE_DIR}/comm/nccl/*.cpp)
  target_sources(${target} PRIVATE ${host} $<TARGET_OBJECTS:kl_cuda_kernels>)
  target_include_directories(${target} PUBLIC ${KL_NCCL_INCLUDE_DIR})
  target_compile_definitions(${target} PUBLIC KL_HAVE_CUDA=1)
  target_link_libraries(${target} PUBLIC CUDA::cudart CUDA::cublasLt ${KL_NCCL_LIBRARY})
endfunction()
