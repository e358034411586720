// The checkpoint API a C++ user calls without the trainer: training::model_sharded_tensors to
// save a model with dist_checkpointing::save_checkpoint, training::model_load_requests to load it
// into another instance. A SwiGLU model round-trips exactly, and loading really writes every
// parameter (the second model starts from other weights).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>

#include "mcore/comm/local_backend.h"
#include "mcore/dist_checkpointing/checkpoint.h"
#include "mcore/models/gpt/gpt_model.h"
#include "mcore/models/presets.h"
#include "mcore/training/checkpointing.h"

namespace mcore::training {
namespace {

namespace fs = std::filesystem;
namespace dcp = dist_checkpointing;

std::unique_ptr<models::GPTModel> make_model(uint64_t seed) {
  transformer::TransformerConfig c = models::get_preset("llama3-tiny").config;
  c.seed = seed;
  models::GPTModelOptions o;
  o.share_embeddings_and_output_weights = false;
  o.tp_group = comm::make_local_group();
  EXPECT_TRUE(c.gated_linear_unit) << "the preset should be a SwiGLU model";
  return std::make_unique<models::GPTModel>(c, transformer::get_gpt_layer_local_spec(), 256, 64, o);
}

TEST(ModelCheckpointApi, SaveAndLoadRoundTripsAModel) {
  const fs::path dir = fs::temp_directory_path() / ("mcore_api_ckpt_" + std::to_string(getpid()));
  fs::remove_all(dir);
  auto a = make_model(1), b = make_model(2);
  const std::string saved =
      dcp::save_checkpoint(dir.string(), 5, model_sharded_tensors(a->named_parameters()));
  EXPECT_EQ(saved, dcp::get_checkpoint_dir(dir.string(), 5));
  auto requests = model_load_requests(b->named_parameters(), dcp::CheckpointMetadata::read(saved));
  dcp::load_checkpoint(saved, requests);
  const auto pa = a->named_parameters(), pb = b->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  int differed_before = 0;
  for (size_t i = 0; i < pa.size(); ++i) {
    ASSERT_EQ(pa[i].first, pb[i].first);
    const Tensor& x = *pa[i].second;
    const Tensor& y = *pb[i].second;
    ASSERT_EQ(x.shape(), y.shape()) << pa[i].first;
    EXPECT_EQ(std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()), 0) << pa[i].first;
    differed_before += pa[i].first.find("linear_fc1.weight") != std::string::npos;
  }
  EXPECT_GT(differed_before, 0);  // the SwiGLU fc1 weights are among those compared
  // The second model was built from another seed: its weights came from the file.
  auto c = make_model(2);
  EXPECT_NE(std::memcmp(c->named_parameters()[0].second->data_ptr(), pa[0].second->data_ptr(),
                        pa[0].second->nbytes()),
            0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace mcore::training
