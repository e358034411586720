// What each MPI rank is doing, readable by any other rank without its help, so that a rank whose
// collective times out can say which members never arrived and where they are instead ("rank 2
// has not reached it; it is waiting in barrier on group 'world/split1' #5", or "... not in any
// collective: computing, stuck or dead").
//
// Every rank exposes a small record in an MPI window (passive target, opened for the whole run):
// for each process group it belongs to, the sequence number of the last collective it posted,
// and the text of the operation it is waiting in, if any. Writers store into their own record
// (cheap: no MPI call); a timed-out rank reads the others' records with MPI_Rget, each read
// bounded by a deadline, since a rank that is computing may not make MPI progress for it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mcore::comm::rank_status {

// Collective over MPI_COMM_WORLD (after MPI_Init); finalize() before MPI_Finalize. Without
// init() the other calls do nothing (and describe_late_ranks returns "").
void init();
void finalize();

// A key naming a group identically on all of its members.
uint64_t group_key(const std::string& name, const std::vector<int>& global_ranks);

// This rank posted collective #seq of the group `key`.
void note_posted(uint64_t key, uint64_t seq);
// This rank waits in `what` (until note_done()).
void note_waiting(const std::string& what);
void note_done();

// For collective #seq of group `key` that timed out here: each member of `global_ranks` (other
// than this rank) that has not posted it, with what it is doing now. "" when all have posted
// or nothing could be read.
std::string describe_late_ranks(uint64_t key, uint64_t seq, const std::vector<int>& global_ranks);

}  // namespace mcore::comm::rank_status
