#include "mcore/comm/mpi_backend.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <exception>
#include <functional>
#include <numeric>
#include <thread>

#include "mcore/base/error.h"
#include "mcore/comm/checks.h"
#include "mcore/comm/distributed.h"
#include "mcore/comm/mpi_ops.h"
#include "mcore/comm/rank_status.h"
#include "mcore/tensor/factory.h"

namespace mcore::comm {

using mpi::check_mpi;

namespace {

bool mpi_running() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

// Data movement only needs the element width, not its meaning.
MPI_Datatype movement_type(DType d) {
  switch (dtype_size(d)) {
    case 1:
      return MPI_BYTE;
    case 2:
      return MPI_UINT16_T;
    case 4:
      return MPI_UINT32_T;
    default:
      return MPI_UINT64_T;
  }
}

int to_int(int64_t v, const char* op) {
  MCORE_CHECK(v <= INT_MAX) << op << ": " << v
                            << " elements exceed MPI's int count limit; split the tensor into "
                               "pieces below 2^31 elements";
  return static_cast<int>(v);
}

void check_cpu(const Tensor& t, const char* op) {
  MCORE_CHECK(t.defined()) << op << ": undefined tensor";
  MCORE_CHECK(t.device().is_cpu()) << op << ": the mpi backend needs CPU tensors, got one on "
                                   << t.device() << " (use the nccl backend for CUDA tensors)";
}

// A contiguous buffer the op can write, and whether it must be copied back into `t` afterwards.
Tensor writable(const Tensor& t, bool keep_values, bool* staged) {
  *staged = !t.is_contiguous();
  if (!*staged) return t;
  return keep_values ? t.contiguous() : empty(t.shape(), {t.dtype(), t.device()});
}

}  // namespace

class MpiProcessGroup::OpWork final : public Work {
 public:
  OpWork(std::string op, std::string group, std::shared_ptr<const std::vector<int>> ranks,
         uint64_t seq, uint64_t key, bool collective)
      : op_(std::move(op)),
        group_(std::move(group)),
        ranks_(std::move(ranks)),
        seq_(seq),
        key_(key),
        collective_(collective) {}

  ~OpWork() override {
    if (done_ || requests_.empty() || !mpi_running()) return;
    if (std::uncaught_exceptions() > 0) {
      // Unwinding towards an abort: do not wait, but keep the buffers MPI may still write.
      new std::vector<Tensor>(std::move(keep_));  // NOLINT: deliberate leak
      return;
    }
    wait();  // never free memory that an op in flight still uses
  }

  // A slot for the next MPI call's request (filled at once by that call).
  MPI_Request* request() {
    requests_.push_back(MPI_REQUEST_NULL);
    return &requests_.back();
  }
  void keep(Tensor t) { keep_.push_back(std::move(t)); }
  std::vector<int>& int_args() { return int_args_; }
  void set_finish(std::function<void(OpWork&)> f) { finish_ = std::move(f); }
  void want_status() { want_status_ = true; }
  const MPI_Status& status(size_t i) const { return statuses_[i]; }

  bool is_completed() override { return test(); }

  void wait() override {
    if (done_) return;
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    const auto timeout = get_timeout();
    const bool yield = yield_when_idle();
    if (test()) return;
    // Published for a peer whose own wait times out (rank_status.h).
    rank_status::note_waiting(op_ + " on group '" + group_ + "' #" + std::to_string(seq_));
    struct Done {
      ~Done() { rank_status::note_done(); }
    } done;
    for (uint64_t spin = 1;; ++spin) {
      if (test()) return;
      if (spin % 64 != 0) continue;  // read the clock every 64 polls only
      const auto waited = Clock::now() - start;
      if (waited > timeout) {
        // Which members never posted this collective, and where they are instead.
        const std::string late =
            collective_ ? rank_status::describe_late_ranks(key_, seq_, *ranks_) : std::string();
        abort_on_timeout(op_, group_, *ranks_, seq_, std::chrono::duration<double>(waited).count(),
                         late);
      }
      // More ranks than cores: let the peer we wait for run. Never sleep: OpenMPI moves large
      // messages only while the ranks poll.
      if (yield) std::this_thread::yield();
    }
  }

 private:
  bool test() {
    if (done_) return true;
    int flag = 0;
    const int n = static_cast<int>(requests_.size());
    int rc;
    if (want_status_) {
      statuses_.resize(requests_.size());
      rc = MPI_Testall(n, requests_.data(), &flag, statuses_.data());
      if (rc == MPI_ERR_IN_STATUS) {
        for (const MPI_Status& s : statuses_) {
          if (s.MPI_ERROR != MPI_SUCCESS && s.MPI_ERROR != MPI_ERR_PENDING) rc = s.MPI_ERROR;
        }
      }
    } else {
      rc = MPI_Testall(n, requests_.data(), &flag, MPI_STATUSES_IGNORE);
    }
    if (rc != MPI_SUCCESS) {
      done_ = true;  // the requests are dead; do not wait on them again
      check_mpi(rc, (op_ + " on group '" + group_ + "'").c_str());
    }
    if (!flag) return false;
    done_ = true;
    if (finish_) {
      auto finish = std::move(finish_);
      finish(*this);
    }
    keep_.clear();
    return true;
  }

  std::string op_;
  std::string group_;
  std::shared_ptr<const std::vector<int>> ranks_;
  uint64_t seq_;
  uint64_t key_;
  bool collective_;
  std::vector<MPI_Request> requests_;
  std::vector<MPI_Status> statuses_;
  std::vector<Tensor> keep_;
  std::vector<int> int_args_;  // count/displacement arrays MPI reads until completion
  std::function<void(OpWork&)> finish_;
  bool want_status_ = false;
  bool done_ = false;
};

MpiProcessGroup::MpiProcessGroup(MPI_Comm comm, bool owned, std::vector<int> global_ranks)
    : comm_(comm), owned_(owned) {
  check_mpi(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  MCORE_CHECK(static_cast<int>(global_ranks.size()) == size_)
      << "MpiProcessGroup: " << global_ranks.size() << " global ranks for a communicator of "
      << size_;
  global_ranks_ = std::make_shared<const std::vector<int>>(std::move(global_ranks));
  int* ub = nullptr;
  int found = 0;
  MPI_Comm_get_attr(comm_, MPI_TAG_UB, &ub, &found);
  if (found && ub) tag_ub_ = *ub;
}

MpiProcessGroup::~MpiProcessGroup() {
  if (owned_ && mpi_running()) MPI_Comm_free(&comm_);
}

std::shared_ptr<MpiProcessGroup::OpWork> MpiProcessGroup::new_work(const char* op,
                                                                   bool collective) {
  const uint64_t seq = collective ? ++seq_ : ++p2p_seq_;
  const std::string group = name();
  const uint64_t key = rank_status::group_key(group, *global_ranks_);
  if (collective) rank_status::note_posted(key, seq);
  return std::make_shared<OpWork>(op, group, global_ranks_, seq, key, collective);
}

WorkPtr MpiProcessGroup::all_reduce_async(Tensor& tensor, ReduceOp op) {
  check_cpu(tensor, "all_reduce");
  const mpi::ReduceSpec spec = mpi::reduce_spec(tensor.dtype(), op, "all_reduce");
  const std::string what = std::string("all_reduce(") + reduce_op_name(op) + ")";
  auto work = new_work(what.c_str(), true);
  bool staged = false;
  Tensor buf = writable(tensor, true, &staged);
  const int count = to_int(buf.numel(), "all_reduce");
  check_mpi(MPI_Iallreduce(MPI_IN_PLACE, buf.data_ptr(), count, spec.datatype, spec.op, comm_,
                           work->request()),
            "MPI_Iallreduce");
  work->keep(buf);
  if (op == ReduceOp::kAvg || staged) {
    const int n = size_;
    work->set_finish([tensor, buf, op, staged, n](OpWork&) mutable {
      if (op == ReduceOp::kAvg) mpi::divide_inplace(buf.data_ptr(), buf.numel(), buf.dtype(), n);
      if (staged) tensor.copy_(buf);
    });
  }
  return work;
}

WorkPtr MpiProcessGroup::all_gather_async(Tensor& output, const Tensor& input) {
  check_cpu(output, "all_gather");
  check_cpu(input, "all_gather");
  detail::check_all_gather(output, input, size_, "all_gather");
  auto work = new_work("all_gather", true);
  const MPI_Datatype type = movement_type(input.dtype());
  const int count = to_int(input.numel(), "all_gather");
  const bool overlap = detail::overlaps(output, input);
  bool staged = false;
  Tensor out = writable(output, false, &staged);
  const void* send = nullptr;
  Tensor in;
  // Megatron's distributed optimizer gathers a shard that already sits at this rank's place in
  // the output: that is MPI_IN_PLACE, no copy.
  if (!staged && overlap && input.is_contiguous() &&
      static_cast<const char*>(input.data_ptr()) ==
          static_cast<const char*>(out.data_ptr()) + static_cast<size_t>(rank_) * input.nbytes()) {
    send = MPI_IN_PLACE;
  } else {
    in = input.contiguous();
    if (overlap && !staged) {  // other aliasing: gather into a fresh buffer
      out = empty(output.shape(), {output.dtype(), output.device()});
      staged = true;
    }
    send = in.data_ptr();
    work->keep(in);
  }
  check_mpi(MPI_Iallgather(send, count, type, out.data_ptr(), count, type, comm_, work->request()),
            "MPI_Iallgather");
  work->keep(out);
  if (staged) work->set_finish([output, out](OpWork&) mutable { output.copy_(out); });
  return work;
}

WorkPtr MpiProcessGroup::reduce_scatter_async(Tensor& output, const Tensor& input, ReduceOp op) {
  check_cpu(output, "reduce_scatter");
  check_cpu(input, "reduce_scatter");
  detail::check_reduce_scatter(output, input, size_, "reduce_scatter");
  const mpi::ReduceSpec spec = mpi::reduce_spec(input.dtype(), op, "reduce_scatter");
  const std::string what = std::string("reduce_scatter(") + reduce_op_name(op) + ")";
  auto work = new_work(what.c_str(), true);
  const int count = to_int(output.numel(), "reduce_scatter");
  Tensor in = input.contiguous();
  bool staged = false;
  Tensor out = writable(output, false, &staged);
  if (!staged && detail::overlaps(out, in)) {
    // The output is a piece of the input (the distributed optimizer's grad shard): reduce into
    // a fresh chunk and copy it over once the input is no longer read.
    out = empty(output.shape(), {output.dtype(), output.device()});
    staged = true;
  }
  check_mpi(MPI_Ireduce_scatter_block(in.data_ptr(), out.data_ptr(), count, spec.datatype, spec.op,
                                      comm_, work->request()),
            "MPI_Ireduce_scatter_block");
  work->keep(in);
  work->keep(out);
  if (op == ReduceOp::kAvg || staged) {
    const int n = size_;
    work->set_finish([output, out, op, staged, n](OpWork&) mutable {
      if (op == ReduceOp::kAvg) mpi::divide_inplace(out.data_ptr(), out.numel(), out.dtype(), n);
      if (staged) output.copy_(out);
    });
  }
  return work;
}

WorkPtr MpiProcessGroup::broadcast_async(Tensor& tensor, int root) {
  check_cpu(tensor, "broadcast");
  detail::check_peer(root, size_, "broadcast", "root");
  const std::string what = "broadcast(root " + std::to_string(root) + ")";
  auto work = new_work(what.c_str(), true);
  bool staged = false;
  Tensor buf = writable(tensor, rank_ == root, &staged);
  check_mpi(MPI_Ibcast(buf.data_ptr(), to_int(buf.numel(), "broadcast"), movement_type(buf.dtype()),
                       root, comm_, work->request()),
            "MPI_Ibcast");
  work->keep(buf);
  if (staged && rank_ != root)
    work->set_finish([tensor, buf](OpWork&) mutable { tensor.copy_(buf); });
  return work;
}

WorkPtr MpiProcessGroup::all_to_all_single_async(Tensor& output, const Tensor& input,
                                                 const std::vector<int64_t>& out_splits,
                                                 const std::vector<int64_t>& in_splits) {
  check_cpu(output, "all_to_all_single");
  check_cpu(input, "all_to_all_single");
  const detail::AllToAllSplits s =
      detail::resolve_all_to_all(output, input, out_splits, in_splits, size_);
  auto work = new_work(
      out_splits.empty() && in_splits.empty() ? "all_to_all_single" : "all_to_all_single(uneven)",
      true);
  const MPI_Datatype type = movement_type(input.dtype());
  Tensor in = input.contiguous();
  bool staged = false;
  Tensor out = writable(output, false, &staged);
  if (!staged && detail::overlaps(out, in)) {
    out = empty(output.shape(), {output.dtype(), output.device()});
    staged = true;
  }
  const bool equal = std::all_of(s.in_rows.begin(), s.in_rows.end(),
                                 [&](int64_t r) { return r == s.in_rows[0]; }) &&
                     s.in_rows == s.out_rows;
  if (equal) {
    // Equal parts: MPI_Ialltoall, whose algorithms beat the v-variant's.
    const int count = to_int(s.in_rows[0] * s.row_numel, "all_to_all_single");
    check_mpi(MPI_Ialltoall(in.data_ptr(), count, type, out.data_ptr(), count, type, comm_,
                            work->request()),
              "MPI_Ialltoall");
  } else {
    std::vector<int>& a = work->int_args();
    a.resize(4 * size_);
    int* send_counts = a.data();
    int* send_displs = send_counts + size_;
    int* recv_counts = send_displs + size_;
    int* recv_displs = recv_counts + size_;
    int64_t sd = 0, rd = 0;
    for (int r = 0; r < size_; ++r) {
      send_counts[r] = to_int(s.in_rows[r] * s.row_numel, "all_to_all_single");
      send_displs[r] = to_int(sd, "all_to_all_single");
      sd += send_counts[r];
      recv_counts[r] = to_int(s.out_rows[r] * s.row_numel, "all_to_all_single");
      recv_displs[r] = to_int(rd, "all_to_all_single");
      rd += recv_counts[r];
    }
    check_mpi(MPI_Ialltoallv(in.data_ptr(), send_counts, send_displs, type, out.data_ptr(),
                             recv_counts, recv_displs, type, comm_, work->request()),
              "MPI_Ialltoallv");
  }
  work->keep(in);
  work->keep(out);
  if (staged) work->set_finish([output, out](OpWork&) mutable { output.copy_(out); });
  return work;
}

WorkPtr MpiProcessGroup::send_async(const Tensor& tensor, int dst, int tag) {
  check_cpu(tensor, "send");
  detail::check_peer(dst, size_, "send", "destination");
  MCORE_CHECK(tag >= 0 && tag <= tag_ub_)
      << "send: tag " << tag << " outside MPI's range 0.." << tag_ub_;
  const std::string what = "send(to group rank " + std::to_string(dst) + ", tag " +
                           std::to_string(tag) + ", point-to-point)";
  auto work = new_work(what.c_str(), false);
  Tensor buf = tensor.contiguous();
  check_mpi(MPI_Isend(buf.data_ptr(), to_int(buf.numel(), "send"), movement_type(buf.dtype()), dst,
                      tag, comm_, work->request()),
            "MPI_Isend");
  work->keep(buf);
  return work;
}

WorkPtr MpiProcessGroup::recv_async(Tensor& tensor, int src, int tag) {
  check_cpu(tensor, "recv");
  detail::check_peer(src, size_, "recv", "source");
  MCORE_CHECK(tag >= 0 && tag <= tag_ub_)
      << "recv: tag " << tag << " outside MPI's range 0.." << tag_ub_;
  const std::string what = "recv(from group rank " + std::to_string(src) + ", tag " +
                           std::to_string(tag) + ", point-to-point)";
  auto work = new_work(what.c_str(), false);
  bool staged = false;
  Tensor buf = writable(tensor, false, &staged);
  const MPI_Datatype type = movement_type(buf.dtype());
  check_mpi(MPI_Irecv(buf.data_ptr(), to_int(buf.numel(), "recv"), type, src, tag, comm_,
                      work->request()),
            "MPI_Irecv");
  work->keep(buf);
  work->want_status();
  work->set_finish([tensor, buf, staged, type, src, tag](OpWork& w) mutable {
    int got = 0;
    MPI_Get_count(&w.status(0), type, &got);
    MCORE_CHECK(got == buf.numel())
        << "recv from group rank " << src << " (tag " << tag << "): received " << got
        << " elements but the receive buffer " << shape_str(buf.shape()) << " holds " << buf.numel()
        << "; the sender's tensor must have the same size";
    if (staged) tensor.copy_(buf);
  });
  return work;
}

WorkPtr MpiProcessGroup::barrier_async() {
  auto work = new_work("barrier", true);
  check_mpi(MPI_Ibarrier(comm_, work->request()), "MPI_Ibarrier");
  return work;
}

std::shared_ptr<ProcessGroup> MpiProcessGroup::split(int color, int key) {
  // Exchange (color, key) first through a bounded wait: a rank that never calls split then ends
  // in a timeout naming this group instead of a hang inside MPI_Comm_split.
  Tensor mine = from_vector<int32_t>({color, key});
  Tensor all = empty({2 * size_}, DType::I32);
  {
    const std::string what = "split(color " + std::to_string(color) + ")";
    auto work = new_work(what.c_str(), true);
    check_mpi(MPI_Iallgather(mine.data_ptr(), 2, MPI_INT32_T, all.data_ptr(), 2, MPI_INT32_T, comm_,
                             work->request()),
              "MPI_Iallgather");
    work->wait();
  }
  MPI_Comm comm = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &comm), "MPI_Comm_split");
  if (color < 0) return nullptr;
  // Members in MPI's order: by key, then by rank in this group.
  const int32_t* p = all.data<int32_t>();
  std::vector<int> members;
  for (int r = 0; r < size_; ++r) {
    if (p[2 * r] == color) members.push_back(r);
  }
  std::stable_sort(members.begin(), members.end(),
                   [&](int a, int b) { return p[2 * a + 1] < p[2 * b + 1]; });
  std::vector<int> globals;
  for (int r : members) globals.push_back((*global_ranks_)[r]);
  auto group = std::make_shared<MpiProcessGroup>(comm, true, std::move(globals));
  group->set_name(name() + "/split" + std::to_string(color));
  return group;
}

ProcessGroupPtr make_mpi_world_group() {
  MCORE_CHECK(mpi_running()) << "make_mpi_world_group: MPI is not initialized "
                                "(call mcore::comm::init_distributed first)";
  MPI_Comm comm = MPI_COMM_NULL;
  // A private duplicate: user code on MPI_COMM_WORLD cannot match our messages.
  check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &comm), "MPI_Comm_dup");
  int size = 0;
  MPI_Comm_size(comm, &size);
  std::vector<int> ranks(size);
  std::iota(ranks.begin(), ranks.end(), 0);
  return std::make_shared<MpiProcessGroup>(comm, true, std::move(ranks));
}

}  // namespace mcore::comm
