// Internal helpers shared by the communicator implementations.
#pragma once

#include <string>

#include "video_infinity/communicator.h"

namespace vi::parallel {

std::string host_name();
LaunchInfo launch_from_environment();

}  // namespace vi::parallel
