// Internal helpers shared by the communicator implementations.
#pragma once

#include <string>

#include "video_infinity/communicator.h"

#ifdef VI_HAVE_STORE
#include <c10/util/intrusive_ptr.h>
namespace c10d {
class Store;  // torch/csrc/distributed/c10d/Store.hpp: heavy (custom classes), only where used
}
#endif

namespace vi::parallel {

std::string host_name();
LaunchInfo launch_from_environment();

#ifdef VI_HAVE_MPI
// Rank `root`'s `bytes` at `data` copied to every rank of MPI_COMM_WORLD (a blocking MPI_Bcast).
// The NCCL communicator shares its unique id through it when MPI launched the job; defined in
// communicator_mpi.cpp, so it exists only in builds with MPI.
void mpi_broadcast_bytes(void* data, int bytes, int root);
#endif

#ifdef VI_HAVE_STORE
// The job's rendezvous: a c10d TCPStore at launch.master_addr:master_port (served by rank 0,
// or by torchrun's agent), seen through launch.store_prefix. One connection per process, made
// on first use and kept until the process ends (rank 0 serves it: other ranks may still need
// it after rank 0's last use). Throws naming the address when it cannot be reached within
// VI_RENDEZVOUS_TIMEOUT seconds (default 300: ranks of a batch job start minutes apart).
c10::intrusive_ptr<c10d::Store> rendezvous_store(const LaunchInfo& launch);
#endif

}  // namespace vi::parallel
