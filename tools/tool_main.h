// The main() of every benchmark: errors (no CUDA device, out of memory, a bad flag) as one line
// on stderr and exit status 1, instead of std::terminate's abort.
#pragma once

#include <c10/util/Exception.h>

#include <cstdio>
#include <exception>

namespace vi::tools {

inline int run_main(int argc, char** argv, int (*body)(int, char**)) {
  try {
    return body(argc, argv);
  } catch (const c10::Error& e) {  // LibTorch's message without its stack trace
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what_without_backtrace());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
  }
  return 1;
}

}  // namespace vi::tools
