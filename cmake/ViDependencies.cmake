# Finds every dependency once and records what was found in VI_HAVE_* variables.
# Optional components follow the AUTO/ON/OFF convention: AUTO uses them when found,
# ON fails the configure step when they are missing, OFF never looks.

find_package(Torch REQUIRED)
find_package(Threads REQUIRED)

# Header-only mode for machines without Debian's packages (the lent GPU machine has no apt):
# spdlog, fmt, nlohmann-json, CLI11 and GoogleTest come from .deb files unpacked into
# VI_DEPS_PREFIX (scripts/prepare_gpu_carry.sh), spdlog and fmt compiled into our own code.
option(VI_HEADER_ONLY_DEPS "Use spdlog/fmt/json/CLI11 headers from VI_DEPS_PREFIX instead of installed packages" OFF)
set(VI_DEPS_PREFIX "" CACHE PATH "Prefix (usr/) holding unpacked header packages for VI_HEADER_ONLY_DEPS")
if(VI_HEADER_ONLY_DEPS)
  find_path(VI_SPDLOG_INCLUDE spdlog/spdlog.h HINTS ${VI_DEPS_PREFIX}/include REQUIRED NO_DEFAULT_PATH)
  find_path(VI_FMT_INCLUDE fmt/format.h HINTS ${VI_DEPS_PREFIX}/include REQUIRED NO_DEFAULT_PATH)
  find_path(VI_JSON_INCLUDE nlohmann/json.hpp HINTS ${VI_DEPS_PREFIX}/include REQUIRED NO_DEFAULT_PATH)
  add_library(vi_fmt INTERFACE)
  target_include_directories(vi_fmt SYSTEM INTERFACE ${VI_FMT_INCLUDE})
  target_compile_definitions(vi_fmt INTERFACE FMT_HEADER_ONLY=1)
  add_library(spdlog::spdlog INTERFACE IMPORTED)
  target_include_directories(spdlog::spdlog SYSTEM INTERFACE ${VI_SPDLOG_INCLUDE})
  target_compile_definitions(spdlog::spdlog INTERFACE SPDLOG_HEADER_ONLY=1 SPDLOG_FMT_EXTERNAL=1)
  target_link_libraries(spdlog::spdlog INTERFACE vi_fmt)
  add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
  target_include_directories(nlohmann_json::nlohmann_json SYSTEM INTERFACE ${VI_JSON_INCLUDE})
  list(APPEND CMAKE_PREFIX_PATH ${VI_DEPS_PREFIX})
else()
  find_package(nlohmann_json 3 REQUIRED)
  find_package(spdlog REQUIRED)
endif()
find_package(CLI11 CONFIG QUIET)
if(NOT CLI11_FOUND)
  find_path(VI_CLI11_INCLUDE CLI/CLI.hpp HINTS ${VI_DEPS_PREFIX}/include REQUIRED)
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
  target_include_directories(CLI11::CLI11 INTERFACE ${VI_CLI11_INCLUDE})
endif()

find_package(PkgConfig QUIET)

function(vi_resolve_option name found)
  if(${name} STREQUAL "ON" AND NOT ${found})
    message(FATAL_ERROR "${name}=ON but the dependency was not found")
  endif()
  if(${name} STREQUAL "OFF")
    set(VI_HAVE_${ARGV2} OFF PARENT_SCOPE)
  else()
    set(VI_HAVE_${ARGV2} ${${found}} PARENT_SCOPE)
  endif()
endfunction()

# --- MPI ------------------------------------------------------------------
set(_vi_mpi_found OFF)
if(NOT VI_WITH_MPI STREQUAL "OFF")
  find_package(MPI COMPONENTS C QUIET)
  if(MPI_C_FOUND)
    set(_vi_mpi_found ON)
  endif()
endif()
vi_resolve_option(VI_WITH_MPI _vi_mpi_found MPI)
if(VI_HAVE_MPI)
  find_program(VI_MPIEXEC NAMES mpiexec mpirun HINTS ${MPI_HOME} ENV MPI_HOME PATH_SUFFIXES bin)
endif()

# --- NCCL (+ CUDA runtime) ------------------------------------------------
set(_vi_nccl_found OFF)
if(NOT VI_WITH_NCCL STREQUAL "OFF")
  find_package(CUDAToolkit QUIET)
  # NCCL from the CUDA toolkit, from NCCL_ROOT, or from a pip "nvidia-nccl" wheel.
  set(_nccl_hints $ENV{NCCL_ROOT} ${NCCL_ROOT} ${CUDAToolkit_LIBRARY_ROOT} /usr/local/cuda)
  find_package(Python3 COMPONENTS Interpreter QUIET)
  if(Python3_Interpreter_FOUND)
    execute_process(
      COMMAND ${Python3_EXECUTABLE} -c "import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__ if nvidia.nccl.__file__ else list(nvidia.nccl.__path__)[0]))"
      OUTPUT_VARIABLE _pip_nccl OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(_pip_nccl)
      list(APPEND _nccl_hints ${_pip_nccl})
    endif()
  endif()
  find_path(VI_NCCL_INCLUDE nccl.h HINTS ${_nccl_hints} PATH_SUFFIXES include)
  find_library(VI_NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS ${_nccl_hints} PATH_SUFFIXES lib lib64 lib/x86_64-linux-gnu)
  if(CUDAToolkit_FOUND AND VI_NCCL_INCLUDE AND VI_NCCL_LIBRARY AND _vi_mpi_found)
    set(_vi_nccl_found ON)
  elseif(CUDAToolkit_FOUND AND VI_NCCL_INCLUDE AND VI_NCCL_LIBRARY)
    # Without MPI a single-process NCCL world still works (world size from the environment).
    set(_vi_nccl_found ON)
  endif()
endif()
vi_resolve_option(VI_WITH_NCCL _vi_nccl_found NCCL)
if(VI_HAVE_NCCL)
  add_library(vi_nccl INTERFACE IMPORTED)
  target_include_directories(vi_nccl INTERFACE ${VI_NCCL_INCLUDE})
  target_link_libraries(vi_nccl INTERFACE ${VI_NCCL_LIBRARY} CUDA::cudart)
endif()

# Whether LibTorch itself was built with CUDA (pip torch+cuXXX): then NCCL work is
# ordered on torch's current stream.
set(VI_TORCH_HAS_CUDA OFF)
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
  set(VI_TORCH_HAS_CUDA ON)
endif()

# --- ffmpeg ---------------------------------------------------------------
set(_vi_ffmpeg_found OFF)
if(NOT VI_WITH_FFMPEG STREQUAL "OFF" AND PkgConfig_FOUND)
  pkg_check_modules(LIBAV IMPORTED_TARGET libavformat libavcodec libavutil libswscale)
  if(LIBAV_FOUND)
    set(_vi_ffmpeg_found ON)
  endif()
endif()
vi_resolve_option(VI_WITH_FFMPEG _vi_ffmpeg_found FFMPEG)
