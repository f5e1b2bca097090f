# The CUDA backend (included from the top-level CMakeLists.txt when KL_CUDA is AUTO or ON).
#
# Finds nvcc (CUDACXX, PATH, or /usr/local/cuda/bin), cuBLASLt and NCCL. Sets KL_CUDA_ENABLED and
# defines kl_add_cuda_backend(target), which compiles the .cu kernels for sm_90 (H100/H200) plus
# compute_90 PTX, adds the CUDA host sources to `target` and links cudart, cuBLASLt and NCCL.
# Nothing here needs a GPU: CI compiles all of it on machines without one.

if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
  find_program(KL_NVCC nvcc PATHS /usr/local/cuda/bin NO_CACHE)
  if(KL_NVCC)
    set(ENV{CUDACXX} "${KL_NVCC}")
  endif()
endif()
include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  if(KL_CUDA STREQUAL "ON")
    message(FATAL_ERROR "KL_CUDA=ON but no CUDA compiler (nvcc) was found: install the CUDA toolkit, "
                        "put nvcc on PATH or set CUDACXX, or configure with -DKL_CUDA=OFF")
  endif()
  message(STATUS "kilolayer: nvcc not found; building the CPU backend only (KL_CUDA=AUTO)")
  return()
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

find_path(KL_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} PATH_SUFFIXES include)
find_library(KL_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} PATH_SUFFIXES lib lib64)
if(NOT KL_NCCL_INCLUDE_DIR OR NOT KL_NCCL_LIBRARY OR NOT TARGET CUDA::cublasLt)
  if(KL_CUDA STREQUAL "ON")
    message(FATAL_ERROR "KL_CUDA=ON: cuBLASLt or NCCL not found (nccl.h: ${KL_NCCL_INCLUDE_DIR}, "
                        "libnccl: ${KL_NCCL_LIBRARY})")
  endif()
  message(STATUS "kilolayer: cuBLASLt or NCCL not found; building the CPU backend only (KL_CUDA=AUTO)")
  return()
endif()

set(KL_CUDA_ENABLED ON)
message(STATUS "kilolayer: CUDA backend on (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures "
               "${CMAKE_CUDA_ARCHITECTURES}, NCCL ${KL_NCCL_LIBRARY})")

function(kl_add_cuda_backend target)
  # The kernels: an object library of their own, so that none of the C++ targets' flags
  # (-march=native, OpenMP, MPI) reach nvcc; its objects go into `target`'s archive.
  file(GLOB kernels CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/kernels/cuda/*.cu)
  add_library(kl_cuda_kernels OBJECT ${kernels})
  target_include_directories(kl_cuda_kernels PRIVATE ${CMAKE_SOURCE_DIR})
  target_compile_options(kl_cuda_kernels PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -Xcompiler=-Wall,-Wextra>)
  target_link_libraries(kl_cuda_kernels PRIVATE CUDA::cudart)
  # Host code that calls CUDA, cuBLASLt and NCCL (plain C++, compiled by the C++ compiler).
  file(GLOB host CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/kernels/cuda/*.cpp
       ${CMAKE_SOURCE_DIR}/src/cuda/*.cpp ${CMAKE_SOURCE_DIR}/comm/nccl/*.cpp)
  target_sources(${target} PRIVATE ${host} $<TARGET_OBJECTS:kl_cuda_kernels>)
  target_include_directories(${target} PUBLIC ${KL_NCCL_INCLUDE_DIR})
  target_compile_definitions(${target} PUBLIC KL_HAVE_CUDA=1)
  target_link_libraries(${target} PUBLIC CUDA::cudart CUDA::cublasLt ${KL_NCCL_LIBRARY})
endfunction()
