// Internal helpers shared by the communicator implementations.
#pragma once

#include <string>

#include "video_infinity/communicator.h"

namespace vi::parallel {

std::string host_name();
LaunchInfo launch_from_environment();

#ifdef VI_HAVE_MPI
// Rank `root`'s `bytes` at `data` copied to every rank of MPI_COMM_WORLD (a blocking MPI_Bcast).
// The NCCL communicator shares its unique id through it when MPI launched the job; defined in
// communicator_mpi.cpp, so it exists only in builds with MPI.
void mpi_broadcast_bytes(void* data, int bytes, int root);
#endif

}  // namespace vi::parallel
