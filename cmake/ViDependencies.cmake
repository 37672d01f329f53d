# Finds every dependency once and records what was found in VI_HAVE_* variables.
# Optional components follow the AUTO/ON/OFF convention: AUTO uses them when found,
# ON fails the configure step when they are missing, OFF never looks.

# --- LibTorch 2.x ------------------------------------------------------------
# Unless the caller points CMake at one (Torch_DIR, or CMAKE_PREFIX_PATH), LibTorch is the one
# inside a Python environment's torch (torch.utils.cmake_prefix_path): VI_PYTHON if given, else
# the project's venv (scripts/install_deps.sh: $VI_VENV or .venv/), else python3 on PATH (the lent
# GPU machine's venv). The pip wheels are CUDA builds: libtorch_cuda, cuDNN, NCCL come with them.
set(VI_PYTHON "" CACHE FILEPATH "Python whose torch package provides LibTorch (default: the project venv, else python3)")
if(NOT Torch_DIR)
  set(_vi_python ${VI_PYTHON})
  if(NOT _vi_python)
    set(_vi_venv ${PROJECT_SOURCE_DIR}/.venv)
    if(DEFINED ENV{VI_VENV})
      get_filename_component(_vi_venv "$ENV{VI_VENV}" ABSOLUTE BASE_DIR ${PROJECT_SOURCE_DIR})
    endif()
    if(EXISTS ${_vi_venv}/bin/python3)
      set(_vi_python ${_vi_venv}/bin/python3)
    else()
      find_program(_vi_python NAMES python3)
    endif()
  endif()
  if(_vi_python)
    execute_process(COMMAND ${_vi_python} -c "import torch; print(torch.utils.cmake_prefix_path)"
      OUTPUT_VARIABLE _vi_torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _vi_rc)
    if(_vi_rc EQUAL 0 AND _vi_torch_prefix)
      list(PREPEND CMAKE_PREFIX_PATH ${_vi_torch_prefix})
      # Its torchrun (python -m torch.distributed.run) launches the tests that run without MPI
      # (cached: a reconfigure with Torch_DIR known skips this block).
      set(VI_TORCH_PYTHON ${_vi_python} CACHE INTERNAL "Python of the torch package LibTorch comes from")
      message(STATUS "video-infinity: LibTorch from ${_vi_python}'s torch: ${_vi_torch_prefix}")
    elseif(VI_PYTHON)
      message(FATAL_ERROR "-DVI_PYTHON=${VI_PYTHON}: 'import torch' failed there (exit ${_vi_rc}); "
                          "give a Python with PyTorch 2.x installed, or run scripts/install_deps.sh")
    endif()
  endif()
endif()
# LibTorch's CUDA config looks for nvcc; the toolkit's usual home when it is not on PATH.
if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
  find_program(_vi_nvcc nvcc)
  if(NOT _vi_nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
endif()
find_package(Torch 2.0 QUIET)
if(NOT Torch_FOUND)
  set(_vi_seen "")
  if(Torch_CONSIDERED_VERSIONS)
    set(_vi_seen " (found only: ${Torch_CONSIDERED_CONFIGS} version ${Torch_CONSIDERED_VERSIONS})")
  endif()
  message(FATAL_ERROR "LibTorch 2.x not found${_vi_seen}. Run scripts/install_deps.sh (PyTorch "
                      "2.11 into .venv), or pass -DVI_PYTHON=<a python with torch> or "
                      "-DCMAKE_PREFIX_PATH=<libtorch or torch.utils.cmake_prefix_path>.")
endif()
find_package(Threads REQUIRED)
# The project links LibTorch through vi_torch. PyTorch's wheels export the std::filesystem
# functions of the libstdc++ they link statically (pytorch/pytorch#133437): when libtorch.so
# comes before libstdc++ on a link line, our calls bind to those copies and crash
# (std::filesystem::remove_all jumps to address 0). libstdc++ therefore goes first, both for
# the link-time binding and for the run-time search order (DT_NEEDED follows the link line).
# Also: some LibTorch classes change their layout with NDEBUG (RecordFunction has a member only
# without it), and the wheels are built with NDEBUG, so every translation unit that sees their
# headers defines it too, whatever the build type (a Debug build would otherwise disagree with
# the library about its objects: found by UBSan at -O1 without -DNDEBUG).
add_library(vi_torch INTERFACE)
target_link_libraries(vi_torch INTERFACE stdc++ ${TORCH_LIBRARIES})
target_compile_definitions(vi_torch INTERFACE NDEBUG)
# Whether LibTorch was built with CUDA (the pip wheels are): CUDA streams, events, memory stats
# and the CUDA tests compile only then. Independent of NCCL.
set(VI_TORCH_HAS_CUDA OFF)
if(TARGET torch_cuda)
  set(VI_TORCH_HAS_CUDA ON)
endif()
# LibTorch's c10d TCPStore (distributed builds: the pip wheels): the rendezvous of jobs that
# srun or torchrun start without MPI, and a CPU communicator over it (src/*/*_store.cpp).
find_file(VI_TCPSTORE_HEADER torch/csrc/distributed/c10d/TCPStore.hpp PATHS ${TORCH_INCLUDE_DIRS} NO_DEFAULT_PATH)
set(VI_HAVE_STORE OFF)
if(VI_TCPSTORE_HEADER)
  set(VI_HAVE_STORE ON)
endif()

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

# LibTorch 2.x ships its own fmt (12.x) in torch/include. That directory is searched before
# /usr/include (a compiler default CMake never lists), but spdlog 1.10 only works with the fmt
# it was built with (9.x: fmt::basic_runtime is gone from 11). The LibTorch headers we include
# never include fmt, so spdlog's fmt goes first: VI_FMT_FIRST_INCLUDE is a directory with just
# that fmt in it, which src/CMakeLists.txt puts BEFORE every other include directory.
if(VI_HEADER_ONLY_DEPS)
  set(VI_FMT_FIRST_INCLUDE ${VI_FMT_INCLUDE})
else()
  get_target_property(_vi_fmt_hints fmt::fmt INTERFACE_INCLUDE_DIRECTORIES)
  find_path(VI_FMT_INCLUDE fmt/format.h HINTS ${_vi_fmt_hints} NO_DEFAULT_PATH REQUIRED)
  set(VI_FMT_FIRST_INCLUDE ${PROJECT_BINARY_DIR}/vi-fmt-include)
  file(MAKE_DIRECTORY ${VI_FMT_FIRST_INCLUDE})
  file(CREATE_LINK ${VI_FMT_INCLUDE}/fmt ${VI_FMT_FIRST_INCLUDE}/fmt SYMBOLIC)
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
# Header and library from ONE installation, the one LibTorch itself loads when it came from pip
# (torch/../nvidia/nccl, which has libnccl.so.2 and no libnccl.so symlink): two NCCLs in one
# process would share a soname. Else NCCL_ROOT, else the CUDA toolkit.
set(_vi_nccl_found OFF)
if(NOT VI_WITH_NCCL STREQUAL "OFF")
  find_package(CUDAToolkit QUIET)
  get_filename_component(_vi_pip_nccl "${TORCH_INSTALL_PREFIX}/../nvidia/nccl" ABSOLUTE)
  if(NCCL_ROOT OR DEFINED ENV{NCCL_ROOT})
    set(_vi_nccl_root ${NCCL_ROOT} $ENV{NCCL_ROOT})
  elseif(EXISTS ${_vi_pip_nccl}/include/nccl.h)
    set(_vi_nccl_root ${_vi_pip_nccl})
  else()
    set(_vi_nccl_root ${CUDAToolkit_LIBRARY_ROOT} ${CUDAToolkit_TARGET_DIR} /usr/local/cuda /usr)
  endif()
  find_path(VI_NCCL_INCLUDE nccl.h HINTS ${_vi_nccl_root} PATH_SUFFIXES include NO_DEFAULT_PATH)
  find_library(VI_NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS ${_vi_nccl_root}
    PATH_SUFFIXES lib lib64 lib/x86_64-linux-gnu NO_DEFAULT_PATH)
  # Without MPI a single-process NCCL world still works (world size from the environment).
  if(CUDAToolkit_FOUND AND VI_NCCL_INCLUDE AND VI_NCCL_LIBRARY)
    set(_vi_nccl_found ON)
    message(STATUS "video-infinity: NCCL ${VI_NCCL_LIBRARY} (headers ${VI_NCCL_INCLUDE})")
  endif()
endif()
vi_resolve_option(VI_WITH_NCCL _vi_nccl_found NCCL)
if(VI_HAVE_NCCL)
  add_library(vi_nccl INTERFACE IMPORTED)
  target_include_directories(vi_nccl INTERFACE ${VI_NCCL_INCLUDE})
  target_link_libraries(vi_nccl INTERFACE ${VI_NCCL_LIBRARY} CUDA::cudart)
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
