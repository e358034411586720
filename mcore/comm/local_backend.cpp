#include "mcore/comm/local_backend.h"

#include "mcore/base/error.h"
#include "mcore/comm/checks.h"

namespace mcore::comm {

namespace {

class DoneWork : public Work {
 public:
  void wait() override {}
  bool is_completed() override { return true; }
};

WorkPtr done() {
  static const WorkPtr work = std::make_shared<DoneWork>();
  return work;
}

}  // namespace

// Sends to self wait here until a recv with the same tag takes them (FIFO per tag, as MPI's
// non-overtaking rule).
struct LocalProcessGroup::Mailbox {
  struct Message {
    Tensor data;
    int tag;
  };
  std::deque<Message> sent;
};

namespace {

class LocalRecvWork : public Work {
 public:
  LocalRecvWork(std::shared_ptr<LocalProcessGroup::Mailbox> box, Tensor out, int tag)
      : box_(std::move(box)), out_(std::move(out)), tag_(tag) {}
  bool is_completed() override { return try_take(); }
  void wait() override {
    MCORE_CHECK(try_take()) << "recv from self (local backend) with tag " << tag_
                            << ": no matching send was posted; a single process cannot wait for "
                               "one that comes later (post the send first, or use "
                               "batch_isend_irecv with the send before the recv)";
  }

 private:
  bool try_take();
  std::shared_ptr<LocalProcessGroup::Mailbox> box_;
  Tensor out_;
  int tag_;
  bool done_ = false;
};

}  // namespace

bool LocalRecvWork::try_take() {
  if (done_) return true;
  for (auto it = box_->sent.begin(); it != box_->sent.end(); ++it) {
    if (it->tag != tag_) continue;
    MCORE_CHECK(it->data.numel() == out_.numel() && it->data.dtype() == out_.dtype())
        << "recv from self (local backend), tag " << tag_ << ": the send carried " << it->data.str()
        << " but the receive buffer is " << out_.str();
    out_.copy_(it->data.reshape(out_.shape()));
    box_->sent.erase(it);
    done_ = true;
    return true;
  }
  return false;
}

LocalProcessGroup::LocalProcessGroup(int global_rank)
    : global_ranks_{global_rank}, mailbox_(std::make_shared<Mailbox>()) {}

WorkPtr LocalProcessGroup::all_reduce_async(Tensor& tensor, ReduceOp) {
  MCORE_CHECK(tensor.defined()) << "all_reduce: undefined tensor";
  return done();  // one rank: sum, avg, max and min of one value are the value
}

WorkPtr LocalProcessGroup::all_gather_async(Tensor& output, const Tensor& input) {
  detail::check_all_gather(output, input, 1, "all_gather");
  if (!output.is_same(input)) output.copy_(input.reshape(output.shape()));
  return done();
}

WorkPtr LocalProcessGroup::reduce_scatter_async(Tensor& output, const Tensor& input, ReduceOp) {
  detail::check_reduce_scatter(output, input, 1, "reduce_scatter");
  if (!output.is_same(input)) output.copy_(input.reshape(output.shape()));
  return done();
}

WorkPtr LocalProcessGroup::broadcast_async(Tensor& tensor, int root) {
  MCORE_CHECK(tensor.defined()) << "broadcast: undefined tensor";
  detail::check_peer(root, 1, "broadcast", "root");
  return done();
}

WorkPtr LocalProcessGroup::all_to_all_single_async(Tensor& output, const Tensor& input,
                                                   const std::vector<int64_t>& out_splits,
                                                   const std::vector<int64_t>& in_splits) {
  auto s = detail::resolve_all_to_all(output, input, out_splits, in_splits, 1);
  MCORE_CHECK(s.out_rows[0] == s.in_rows[0])
      << "all_to_all_single: this rank sends " << s.in_rows[0] << " rows to itself but expects "
      << s.out_rows[0];
  if (!output.is_same(input)) output.copy_(input);
  return done();
}

WorkPtr LocalProcessGroup::send_async(const Tensor& tensor, int dst, int tag) {
  detail::check_peer(dst, 1, "send", "destination");
  mailbox_->sent.push_back({tensor.clone(), tag});
  return done();
}

WorkPtr LocalProcessGroup::recv_async(Tensor& tensor, int src, int tag) {
  detail::check_peer(src, 1, "recv", "source");
  auto work = std::make_shared<LocalRecvWork>(mailbox_, tensor, tag);
  work->is_completed();  // takes an already posted send at once
  return work;
}

WorkPtr LocalProcessGroup::barrier_async() {
  return done();
}

std::shared_ptr<ProcessGroup> LocalProcessGroup::split(int color, int) {
  if (color < 0) return nullptr;
  auto group = std::make_shared<LocalProcessGroup>(global_ranks_[0]);
  group->set_name(name() + "/split" + std::to_string(color));
  return group;
}

ProcessGroupPtr make_local_group(int global_rank) {
  return std::make_shared<LocalProcessGroup>(global_rank);
}

}  // namespace mcore::comm
