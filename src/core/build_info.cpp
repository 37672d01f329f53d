// The one file that sees VI_GIT_DESCRIBE (src/CMakeLists.txt): a new commit recompiles only it.
#include "core/run_record.h"

#ifndef VI_GIT_DESCRIBE
#define VI_GIT_DESCRIBE "unknown"
#endif

namespace vi::core {

const char* git_describe() { return VI_GIT_DESCRIBE; }

}  // namespace vi::core
