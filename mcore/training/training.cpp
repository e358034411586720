#include "mcore/training/training.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include "mcore/base/error.h"
#include "mcore/base/rng_state.h"
#include "mcore/comm/distributed.h"
#include "mcore/datasets/blended_megatron_dataset_builder.h"
#include "mcore/datasets/data_loader.h"
#include "mcore/distributed/distributed_data_parallel.h"
#include "mcore/distributed/finalize_model_grads.h"
#include "mcore/models/gpt/gpt_model.h"
#include "mcore/nn/functional.h"
#include "mcore/ops/cpu/blas.h"
#include "mcore/optimizer/clip_grads.h"
#include "mcore/optimizer/distrib_optimizer.h"
#include "mcore/optimizer/optimizer.h"
#include "mcore/optimizer/optimizer_param_scheduler.h"
#include "mcore/parallel_state/parallel_state.h"
#include "mcore/pipeline_parallel/schedules.h"
#include "mcore/tensor/cuda_device.h"
#include "mcore/tensor/factory.h"
#include "mcore/timers/timers.h"
#include "mcore/tokenizers/tokenizer.h"
#include "mcore/training/checkpoint_args.h"
#include "mcore/training/checkpointing.h"
#include "mcore/training/jsonl_logger.h"
#include "mcore/training/microbatch_step.h"
#include "mcore/training/microbatches.h"
#include "mcore/training/model_provider.h"
#include "mcore/training/setup.h"
#include "mcore/training/signal_handler.h"
#include "mcore/training/tensorboard_writer.h"
#include "mcore/training/training_device.h"
#include "mcore/training/training_utils.h"
#include "mcore/transformer/spec.h"

namespace mcore::training {

int pretrain_gpt(Arguments& args) {
  using Clock = std::chrono::steady_clock;
  const auto start_time = Clock::now();
  MCORE_CHECK(args.lr || args.skip_train) << "--lr is required";
  if (!args.lr) args.lr = 0.0;  // evaluation only: the optimizer never steps
  install_exit_signal_handlers();
  comm::set_timeout(distributed_timeout(args));

  parallel_state::initialize_model_parallel(
      static_cast<int>(args.tensor_model_parallel_size),
      static_cast<int>(args.pipeline_model_parallel_size),
      args.virtual_pipeline_model_parallel_size
          ? std::optional<int>(static_cast<int>(*args.virtual_pipeline_model_parallel_size))
          : std::nullopt,
      static_cast<int>(args.context_parallel_size),
      static_cast<int>(args.expert_model_parallel_size),
      static_cast<int>(args.expert_tensor_parallel_size.value_or(args.tensor_model_parallel_size)));
  const int rank = comm::get_rank();
  // Samples are split over the data-parallel ranks; the context-parallel ranks of one
  // data-parallel rank read the same samples and each keeps its chunks of the sequence.
  const int dp_rank = parallel_state::get_data_parallel_rank();
  const int dp_size = parallel_state::get_data_parallel_world_size();
  // The loss is summed over every rank's tokens: data and context parallel.
  comm::ProcessGroupPtr dp_group =
      parallel_state::get_data_parallel_group(/*with_context_parallel=*/true);
  if (args.save && !args.skip_train && rank == 0) lock_save_directory(*args.save);
  const Device device = select_training_device(args);
  // Megatron's timers (--timing-log-level), used by the library's phases through the global.
  timers::Timers phase_timers(static_cast<int>(args.timing_log_level), args.timing_log_option);
  if (device.is_cuda()) phase_timers.set_synchronize([] { cuda_synchronize(); });
  // Every level-1 phase is entered by every rank (finalize_model_grads, the optimizer's parts),
  // so the barrier before each is safe.
  if (args.barrier_with_l1_time) phase_timers.set_level1_barrier([] { comm::world()->barrier(); });
  timers::set_global(&phase_timers);
  struct UnsetTimers {
    ~UnsetTimers() { timers::set_global(nullptr); }
  } unset_timers;
  // Name the GEMM backend and its kernel at start, before the data and the model: a CPU run
  // would otherwise print it at its first GEMM, in the first iteration.
  if (device.is_cpu()) (void)ops::cpu::blas_info();

  // ---- tokenizer, vocabulary, model ----
  auto tokenizer = build_tokenizer_from_args(args);
  set_padded_vocab_size(args, tokenizer->vocab_size());
  adopt_checkpoint_vocab_size(args, tokenizer->vocab_size());
  print_args(args);
  set_rng_state(RngState{static_cast<uint64_t>(args.seed), 0});
  transformer::TransformerConfig config = transformer_config_from_args(args);
  distributed::DistributedDataParallelConfig ddp_config;
  ddp_config.grad_reduce_in_fp32 = args.accumulate_allreduce_grads_in_fp32 || args.bf16;
  ddp_config.overlap_grad_reduce = args.overlap_grad_reduce;
  ddp_config.bucket_size = args.ddp_bucket_size;
  ddp_config.average_in_collective = args.ddp_average_in_collective;
  ddp_config.calculate_per_token_loss = args.calculate_per_token_loss;
  ddp_config.use_distributed_optimizer = args.use_distributed_optimizer;
  ddp_config.pad_buckets_for_high_nccl_busbw = args.ddp_pad_buckets_for_high_nccl_busbw;
  // Under fp16 an inf gradient is the loss scaler's business (the step is skipped), not an
  // error.
  ddp_config.check_for_nan_in_grad = args.check_for_nan_in_loss_and_grad && !args.fp16;
  GPTModelChunks model = build_gpt_model_chunks(args, config, ddp_config, device);
  if (parallel_state::get_data_parallel_rank(/*with_context_parallel=*/true) == 0) {
    std::printf(
        " > number of parameters on (tensor, pipeline) model parallel rank (%d, %d): %lld\n",
        parallel_state::get_tensor_model_parallel_rank(),
        parallel_state::get_pipeline_model_parallel_rank(),
        static_cast<long long>(model.num_parameters()));
    std::fflush(stdout);
  }

  // ---- optimizer, schedule, batch sizes ----
  // The distributed optimizer updates this data-parallel rank's shard of each parameter, so its
  // grad norm, zero count and overflow check are reduced over every rank (Megatron's
  // DistributedOptimizer), not only the model-parallel ones.
  std::shared_ptr<const optimizer::DistributedOptimizerShards> shards;
  if (args.use_distributed_optimizer)
    shards = std::make_shared<optimizer::DistributedOptimizerShards>(model.ddp_ptrs());
  // When a mixture-of-experts model spreads its experts (expert or tensor parallelism), the
  // model-parallel group misses other ranks' experts: the stats are reduced over every rank,
  // each copy of a weight counted once (a sharded distributed-optimizer state already holds
  // each element once).
  const bool spread = experts_spread(args);
  auto opt = optimizer::get_megatron_optimizer(
      optimizer_config(args), model.named_parameters(),
      shards || spread ? comm::world() : optimizer::default_grad_stats_parallel_group(),
      parallel_state::get_tensor_model_parallel_rank(), shards);
  if (spread && !shards) opt->set_grad_stats_filter(experts_counted_once());
  MicrobatchCalculator mb(*args.global_batch_size, *args.micro_batch_size, dp_size,
                          args.rampup_batch_size.value_or(std::vector<int64_t>{}));
  // --skip-train (Megatron's evaluation-only run) needs neither a length nor a schedule.
  const int64_t train_iters = args.train_iters     ? *args.train_iters
                              : args.train_samples ? mb.train_iters_for_samples(*args.train_samples)
                                                   : 0;
  MCORE_CHECK(train_iters > 0 || args.skip_train)
      << "one of --train-iters or --train-samples is required";
  std::optional<optimizer::OptimizerParamScheduler> sched;
  if (!args.skip_train) sched.emplace(opt.get(), scheduler_config(args, train_iters));
  optimizer::OptimizerParamScheduler* scheduler = sched ? &*sched : nullptr;

  // ---- checkpoint ----
  TrainerState state;
  if (auto loaded = load_trainer_checkpoint(args, model.named_parameters(),
                                            args.skip_train ? nullptr : opt.get(), scheduler)) {
    state = *loaded;
  } else if (args.load) {
    print_rank0(
        strf("WARNING: no checkpoint found under --load %s; the model starts from its "
             "random initialization (--exit-on-missing-checkpoint makes this an error)\n",
             args.load->c_str()));
  }
  opt->set_iteration(state.iteration);
  args.consumed_train_samples = state.consumed_train_samples;

  // ---- data ----
  // Evaluation during training needs --eval-interval; the evaluation-only run needs none.
  const bool do_eval = (args.eval_interval || args.skip_train) && args.eval_iters.value_or(0) > 0;
  const int64_t gbs = *args.global_batch_size;
  std::array<std::optional<int64_t>, 3> sizes;
  sizes[0] = args.skip_train ? 0 : args.train_samples ? *args.train_samples : train_iters * gbs;
  const int64_t eval_iters = do_eval ? *args.eval_iters : 0;
  sizes[1] = !do_eval          ? 0
             : args.skip_train ? eval_iters * gbs
                               : (train_iters / *args.eval_interval + 1) * eval_iters * gbs;
  sizes[2] = eval_iters * gbs;
  // As Megatron: rank 0 builds (and caches) the dataset indices while the others wait, then they
  // read its caches instead of every rank building and writing the same files.
  datasets::SplitDatasets ds;
  if (rank == 0) ds = build_datasets(args, *tokenizer, sizes);
  comm::world()->barrier();
  if (rank != 0) ds = build_datasets(args, *tokenizer, sizes);
  std::unique_ptr<datasets::DataLoader> train_loader;
  if (!args.skip_train) {
    MCORE_CHECK(ds[0]) << "the training split is empty (check --split and --data-path)";
    train_loader = std::make_unique<datasets::DataLoader>(ds[0], state.consumed_train_samples,
                                                          *args.micro_batch_size, dp_rank, dp_size);
  }
  std::unique_ptr<datasets::DataLoader> valid_loader;
  if (do_eval && ds[1]) {
    // An evaluation-only run reads the split from its start, as Megatron's --skip-train does.
    valid_loader = std::make_unique<datasets::DataLoader>(
        ds[1], args.skip_train ? 0 : state.consumed_valid_samples, *args.micro_batch_size, dp_rank,
        dp_size);
  }

  // ---- logging ----
  std::unique_ptr<TensorBoardWriter> tb;
  std::unique_ptr<JsonlLogger> jsonl;
  if (args.tensorboard_dir && rank == 0) {
    tb = std::make_unique<TensorBoardWriter>(*args.tensorboard_dir);
    jsonl =
        std::make_unique<JsonlLogger>(*args.tensorboard_dir + "/metrics.jsonl", state.iteration);
  }
  // A log that cannot be written (a full disk) stops with a warning; training and its
  // checkpoints go on rather than losing the work since the last save.
  auto log_safely = [&](const auto& write) {
    try {
      write();
    } catch (const Error& e) {
      std::fprintf(stderr, "WARNING: TensorBoard/JSONL logging stopped: %s\n", e.what());
      tb.reset();
      jsonl.reset();
    }
  };
  if (args.skip_train) {
    print_rank0(strf("skipping training (--skip-train is on): evaluating at iteration %lld\n",
                     static_cast<long long>(state.iteration)));
  } else {
    print_rank0(
        strf("[after dataloaders are built] training for %lld iterations from iteration %lld\n",
             static_cast<long long>(train_iters), static_cast<long long>(state.iteration)));
  }

  auto save = [&]() {
    if (!args.save) return;
    // Announced first, as Megatron does, so a log cut off by a kill shows a save was under way.
    print_rank0(strf(" saving checkpoint at iteration %7lld to %s\n",
                     static_cast<long long>(state.iteration), args.save->c_str()));
    phase_timers("save-checkpoint", 0).start();
    const std::string dir =
        save_trainer_checkpoint(args, model.named_parameters(), opt.get(), scheduler, state);
    phase_timers("save-checkpoint", 0).stop();
    print_rank0(strf("  successfully saved checkpoint at iteration %7lld to %s\n",
                     static_cast<long long>(state.iteration), dir.c_str()));
    log_timers(phase_timers, {"save-checkpoint"}, 1.0);
  };

  // Megatron's evaluate_and_print_results: eval_iters global batches of `loader`, the mean
  // loss over data-parallel ranks, printed between dashed lines.
  auto evaluate = [&](datasets::DataLoader& loader, const std::string& split,
                      const std::string& prefix, int64_t* consumed) {
    model.train(false);
    // Evaluation draws no dropout, and must not shift the masks training draws after it: its
    // steps would otherwise advance the RNG step, so changing --eval-interval or --eval-iters
    // would change the training run (Megatron's evaluation consumes no random numbers).
    const RngState rng = get_rng_state();
    double total = 0, count = 0;
    {
      NoGradGuard no_grad;
      for (int64_t it = 0; it < eval_iters; ++it) {
        auto batches = next_batches(loader, mb.num_microbatches(), split, state.iteration,
                                    consumed ? *consumed : 0);
        const StepLoss l = run_microbatches(model, batches, args, opt.get(), true, state.iteration);
        total += l.loss_sum;
        count += l.count;
        if (consumed) *consumed += mb.current_global_batch_size();
      }
    }
    set_rng_state(rng);
    model.train(true);
    const double loss = data_parallel_loss(dp_group, total, count);
    const double ppl = std::exp(std::min(20.0, loss));
    std::string line = strf(" %s loss at %s | lm loss value: %.6E | lm loss PPL: %.6E | ",
                            split.c_str(), prefix.c_str(), loss, ppl);
    std::string bar(line.size() + 1, '-');
    print_rank0(bar + "\n" + line + "\n" + bar + "\n");
    log_safely([&] {
      if (tb)
        tb->add_scalars({{"lm loss " + split, loss}, {"lm loss " + split + " ppl", ppl}},
                        state.iteration);
      if (jsonl) {
        nlohmann::ordered_json rec;
        rec["iteration"] = state.iteration;
        rec[split + " lm loss"] = loss;
        rec[split + " lm loss PPL"] = ppl;
        jsonl->log(rec);
      }
    });
  };
  auto iteration_prefix = [&] {
    return strf("iteration %lld", static_cast<long long>(state.iteration));
  };

  // ---- train loop ----
  model.train(true);
  double interval_time = 0;
  int64_t interval_iters = 0;
  double loss_sum_interval = 0;
  // MoE load_balancing_loss and z_loss, summed over the interval.
  std::vector<std::pair<std::string, double>> moe_sum_interval;
  int64_t loss_count_interval = 0;
  int64_t skipped_interval = 0, nan_interval = 0;
  bool saved_at_current = false;
  // A signal during setup (index building, loading) ends the run before it trains.
  bool exit_now =
      all_reduce_scalar(comm::world(), received_exit_signal(), comm::ReduceOp::kMax) != 0;
  const bool stopped_in_setup = exit_now;
  if (exit_now) print_rank0("exiting program after receiving a signal during setup\n");
  while (!args.skip_train && state.iteration < train_iters && !exit_now) {
    const auto t0 = Clock::now();
    mb.update(state.consumed_train_samples);
    const int64_t num_mb = mb.num_microbatches();
    for (auto* d : model.ddp_ptrs()) d->zero_grad_buffer();
    opt->zero_grad();
    std::optional<timers::ScopedTimer> batch_timer(std::in_place, "batch-generator", 2);
    auto batches = next_batches(*train_loader, num_mb, "training", state.iteration,
                                state.consumed_train_samples);
    batch_timer.reset();
    start_l1_timer(phase_timers, "forward-backward", args.barrier_with_l1_time);
    const StepLoss step = run_microbatches(model, batches, args, opt.get(), false, state.iteration);
    distributed::finalize_model_grads(model.ddp_ptrs(), args.calculate_per_token_loss
                                                            ? std::optional<double>(step.num_tokens)
                                                            : std::nullopt);
    phase_timers("forward-backward", 1).stop();
    start_l1_timer(phase_timers, "optimizer", args.barrier_with_l1_time);
    optimizer::StepResult sr = opt->step();
    phase_timers("optimizer", 1).stop();
    const int64_t batch_size = mb.current_global_batch_size();
    if (sr.success) {
      scheduler->step(batch_size);
    } else {
      ++state.num_skipped_iterations;
      ++skipped_interval;
    }
    ++state.iteration;
    state.consumed_train_samples += batch_size;
    args.consumed_train_samples = state.consumed_train_samples;
    saved_at_current = false;

    // As Megatron's training_log: a skipped step (fp16 overflow) adds nothing to the interval's
    // mean loss, and counts as a nan iteration when its loss was not finite.
    const double loss = data_parallel_loss(dp_group, step.loss_sum, step.count);
    if (sr.success) {
      loss_sum_interval += loss;
      ++loss_count_interval;
    } else if (!std::isfinite(loss)) {
      ++state.num_nan_iterations;
      ++nan_interval;
    }
    const std::vector<std::pair<std::string, double>> moe_losses = moe_aux_losses(args, num_mb);
    if (moe_sum_interval.size() != moe_losses.size()) {
      moe_sum_interval = moe_losses;
      for (auto& [name, v] : moe_sum_interval) v = 0;
    }
    if (sr.success)
      for (size_t i = 0; i < moe_losses.size(); ++i)
        moe_sum_interval[i].second += moe_losses[i].second;
    const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    interval_time += elapsed;
    ++interval_iters;

    const double lr = opt->param_groups().empty() ? 0.0 : opt->param_groups()[0].lr;
    const double grad_norm = sr.grad_norm.value_or(0.0);
    const double loss_scale = opt->get_loss_scale();
    const double tokens_per_s =
        static_cast<double>(batch_size * *args.seq_length) / std::max(elapsed, 1e-9);
    const double tflops = num_floating_point_operations(args, batch_size) /
                          (std::max(elapsed, 1e-9) * 1e12 * args.world_size);
    if (jsonl) {
      std::vector<std::pair<std::string, double>> metrics = {
          {"lm loss", loss},
          {"learning rate", lr},
          {"grad norm", grad_norm},
          {"loss scale", loss_scale},
          {"global batch size", static_cast<double>(batch_size)},
          {"consumed samples", static_cast<double>(state.consumed_train_samples)},
          {"elapsed time per iteration (ms)", elapsed * 1e3},
          {"throughput (TFLOP/s/GPU)", tflops},
          {"tokens per second", tokens_per_s}};
      if (sr.num_zeros_in_grad) metrics.push_back({"num zeros", double(*sr.num_zeros_in_grad)});
      for (const auto& m : moe_losses) metrics.push_back(m);
      log_safely([&] { jsonl->log_iteration(state.iteration, metrics); });
    }
    // Max over ranks, ms per iteration since the last log line, read without resetting: a
    // collective, so every rank takes part although only rank 0 writes TensorBoard.
    std::map<std::string, double> timer_ms;
    if (args.log_timers_to_tensorboard && state.iteration % args.tensorboard_log_interval == 0)
      timer_ms = phase_timers.max_times(kTimersToLog, comm::world(),
                                        static_cast<double>(interval_iters), false);
    if (tb && state.iteration % args.tensorboard_log_interval == 0) {
      const MemoryGib mem = memory_gib(device);
      std::vector<std::pair<std::string, double>> v = {
          {"lm loss", loss},        {"learning-rate", lr},  {"batch-size", double(batch_size)},
          {"grad-norm", grad_norm}, {"throughput", tflops}, {"tokens-per-second", tokens_per_s}};
      if (args.log_loss_scale_to_tensorboard) v.push_back({"loss-scale", loss_scale});
      if (sr.num_zeros_in_grad) v.push_back({"num-zeros", double(*sr.num_zeros_in_grad)});
      for (const auto& m : moe_losses) v.push_back(m);
      for (const auto& [name, ms] : timer_ms) v.push_back({name + "-time", ms});
      v.push_back({device.is_cuda() ? "mem-allocated-gib" : "mem-rss-gib", mem.current});
      v.push_back({"mem-peak-gib", mem.peak});
      log_safely([&] { tb->add_scalars(v, state.iteration); });
    }
    if (state.iteration % args.log_interval == 0) {
      const double ms = interval_time * 1e3 / static_cast<double>(interval_iters);
      const double avg_loss =
          loss_count_interval ? loss_sum_interval / static_cast<double>(loss_count_interval) : 0;
      // The largest rank's memory (pipeline stages differ: the first holds the most in flight).
      MemoryGib mem = memory_gib(device);
      mem.current = all_reduce_scalar(comm::world(), mem.current, comm::ReduceOp::kMax);
      mem.peak = all_reduce_scalar(comm::world(), mem.peak, comm::ReduceOp::kMax);
      // Megatron's fields in its order (FORMATS.md), ours after them.
      const auto wall = std::chrono::system_clock::now();
      const std::time_t now = std::chrono::system_clock::to_time_t(wall);
      const long long micros =
          std::chrono::duration_cast<std::chrono::microseconds>(wall.time_since_epoch()).count() %
          1000000;
      char ts[32];
      std::strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", std::localtime(&now));
      std::string line =
          strf(" [%s.%06lld] iteration %8lld/%8lld |", ts, micros,
               static_cast<long long>(state.iteration), static_cast<long long>(train_iters));
      line +=
          strf(" consumed samples: %12lld |", static_cast<long long>(state.consumed_train_samples));
      line += strf(" elapsed time per iteration (ms): %.1f |", ms);
      if (args.log_throughput) {
        line += strf(
            " throughput per GPU (TFLOP/s/GPU): %.1f |",
            num_floating_point_operations(args, batch_size) / (ms * 1e-3 * 1e12 * args.world_size));
      }
      line += strf(" learning rate: %.6E |", lr);
      line += strf(" global batch size: %5lld |", static_cast<long long>(batch_size));
      if (loss_count_interval) line += strf(" lm loss: %.6E |", avg_loss);
      if (loss_count_interval)  // over the advanced iterations, as the lm loss
        for (const auto& [name, sum] : moe_sum_interval)
          line += strf(" %s: %.6E |", name.c_str(), sum / static_cast<double>(loss_count_interval));
      line += strf(" loss scale: %.1f |", loss_scale);
      if (sr.grad_norm) line += strf(" grad norm: %.3f |", grad_norm);
      if (sr.num_zeros_in_grad)
        line += strf(" num zeros: %.1f |", static_cast<double>(*sr.num_zeros_in_grad));
      if (args.log_params_norm)
        line += strf(" params norm: %.3f |", params_norm(model.named_parameters(), args));
      line +=
          strf(" number of skipped iterations: %3lld |", static_cast<long long>(skipped_interval));
      line += strf(" number of nan iterations: %3lld |", static_cast<long long>(nan_interval));
      line += strf(" tokens per second: %.0f |",
                   static_cast<double>(batch_size * *args.seq_length) / (ms * 1e-3));
      // CPU: resident set; GPU: the caching allocator's allocated bytes (and reserved).
      line += strf(" mem (GiB, max over ranks): %.2f, peak %.2f |", mem.current, mem.peak);
      if (device.is_cuda()) line += strf(" mem reserved (GiB): %.2f |", mem.reserved);
      line += " ETA: " + format_eta(ms * 1e-3 * static_cast<double>(train_iters - state.iteration));
      print_rank0(line + "\n");
      log_timers(phase_timers, kTimersToLog, static_cast<double>(interval_iters));
      interval_time = 0;
      interval_iters = 0;
      loss_sum_interval = 0;
      for (auto& [name, sum] : moe_sum_interval) sum = 0;
      loss_count_interval = 0;
      skipped_interval = nan_interval = 0;
    }

    if (valid_loader && state.iteration % *args.eval_interval == 0) {
      evaluate(*valid_loader, "validation", iteration_prefix(), &state.consumed_valid_samples);
    }

    // ---- checkpoint and exit conditions (agreed across ranks) ----
    if (args.save && args.save_interval && state.iteration % *args.save_interval == 0) {
      save();
      saved_at_current = true;
    }
    const double sig =
        all_reduce_scalar(comm::world(), received_exit_signal(), comm::ReduceOp::kMax);
    if (sig != 0) {
      print_rank0(strf("exiting program after receiving signal %d at iteration %lld\n",
                       static_cast<int>(sig), static_cast<long long>(state.iteration)));
      exit_now = true;
    }
    if (args.exit_duration_in_mins && *args.exit_duration_in_mins > 0) {  // Megatron: 0 is off
      const double minutes =
          std::chrono::duration<double>(Clock::now() - start_time).count() / 60.0;
      if (all_reduce_scalar(comm::world(), minutes, comm::ReduceOp::kMax) >
          static_cast<double>(*args.exit_duration_in_mins)) {
        print_rank0(strf("exiting program after %.2f minutes\n", minutes));
        exit_now = true;
      }
    }
    // Fault injection for the exact-resume test: a real kill -9 at a chosen iteration.
    if (const char* k = std::getenv("MCORE_FAULT_KILL_AT_ITERATION");
        k && state.iteration == std::atoll(k)) {
      std::fflush(stdout);
      std::raise(SIGKILL);
    }
    if (args.exit_interval && state.iteration % *args.exit_interval == 0) {
      print_rank0(
          strf("exiting program at iteration %lld\n", static_cast<long long>(state.iteration)));
      exit_now = true;
    }
  }
  // Megatron's final save: unless the iteration is a multiple of --save-interval (that save
  // exists already, e.g. a run resumed at its --train-iters) or the run stopped during setup.
  if (args.save && !args.skip_train && !saved_at_current && !stopped_in_setup &&
      state.iteration > 0 && state.iteration % *args.save_interval != 0)
    save();
  if (!exit_now && do_eval && (args.skip_train || state.iteration >= train_iters)) {
    // As Megatron's pretrain(): after training (and its checkpoint), the validation set once
    // more and the test set.
    if (valid_loader) {
      evaluate(*valid_loader, "validation", iteration_prefix() + " on validation set",
               &state.consumed_valid_samples);
    }
    if (ds[2]) {
      datasets::DataLoader test_loader(ds[2], 0, *args.micro_batch_size, dp_rank, dp_size);
      evaluate(test_loader, "test", iteration_prefix() + " on test set", nullptr);
    }
  }
  log_safely([&] {
    if (tb) tb->flush(true);
  });
  return 0;
}

int pretrain_gpt_main(int argc, char** argv) {
  return comm::run_distributed_main(argc, argv, [](int ac, char** av) -> int {
    Arguments args = parse_args(ac, av);
    if (args.help) {
      std::fputs(help_text("pretrain_gpt").c_str(), stdout);
      return 0;
    }
    comm::InitOptions init;
    init.timeout = distributed_timeout(args);
    init.device = init_device(args);  // cuda: the nccl backend
    comm::init_distributed(init);
    if (args.use_checkpoint_args) {
      MCORE_CHECK(args.load) << "--use-checkpoint-args needs --load (the checkpoint to read "
                                "the model arguments from)";
      // Megatron: a --load without a checkpoint yet (the first run of a job that resumes
      // itself) keeps the command line's arguments.
      std::optional<std::string> dir;
      try {
        dir = checkpoint_dir_to_load(*args.load, false);
      } catch (const Error&) {
        if (comm::get_rank() == 0)
          std::printf("Checkpoint not found to provide arguments, using provided arguments.\n");
      }
      if (dir) {
        const std::vector<std::string> argv(av, av + ac);
        args = parse_args(argv_with_checkpoint_args(argv, args, *dir));
      }
    }
    validate_args(args, comm::get_world_size(), comm::get_rank());
    const int rc = pretrain_gpt(args);
    parallel_state::destroy_model_parallel();
    return rc;
  });
}

}  // namespace mcore::training
