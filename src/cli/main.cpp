// video-infinity: command-line entry point (subcommands are added by later issues).
#include <cstdio>

#include "core/check.h"
#include "core/log.h"

int main(int argc, char** argv) {
  std::puts("video-infinity " VI_VERSION);
  return 0;
}
