// gtest main for the tests CTest runs under mpirun: initializes the distributed environment,
// lets rank 0 print the usual gtest report and the other ranks only their failures (prefixed
// "[rank N]"), and exits non-zero on every rank whose tests failed, so mpirun (and CTest) fail
// when any rank fails. An exception escaping a test body aborts the whole job with the rank
// named (run_distributed_main), and a rank stuck in a collective ends in the distributed
// timeout, so a broken test can never hang CI.
#include <gtest/gtest.h>

#include <cstdio>

#include "mcore/comm/distributed.h"
#include "mcore/tensor/factory.h"

namespace {

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_,
                 r.file_name() ? r.file_name() : "?", r.line_number(), r.message());
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (info.result()->Failed()) {
      std::fprintf(stderr, "[rank %d] [  FAILED  ] %s.%s\n", rank_, info.test_suite_name(),
                   info.name());
    }
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return mcore::comm::run_distributed_main(argc, argv, [](int, char**) {
    using namespace mcore;
    comm::init_distributed();
    const int rank = comm::get_rank();
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    if (rank != 0) {
      delete listeners.Release(listeners.default_result_printer());
      listeners.Append(new RankFailurePrinter(rank));
    }
    const int rc = RUN_ALL_TESTS();
    // Rank 0's summary names every rank that failed.
    Tensor failed = from_vector<int32_t>({rc != 0 ? 1 : 0});
    std::vector<Tensor> all;
    comm::world()->all_gather(all, failed);
    if (rank == 0) {
      std::string list;
      for (size_t r = 0; r < all.size(); ++r) {
        if (all[r].item<int>() != 0) list += (list.empty() ? "" : ", ") + std::to_string(r);
      }
      std::printf("[distributed] %d rank(s), %s\n", comm::get_world_size(),
                  list.empty() ? "all passed" : ("FAILED on ranks " + list).c_str());
      std::fflush(stdout);
    }
    return rc;
  });
}
