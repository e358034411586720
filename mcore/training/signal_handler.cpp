#include "mcore/training/signal_handler.h"

#include <csignal>

namespace mcore::training {
namespace {

volatile std::sig_atomic_t g_signal = 0;

// The first SIGTERM/SIGINT asks for a checkpoint and a clean exit at the end of the step; the
// handler then steps aside, so a second one (an impatient Ctrl-C) ends the process at once.
void on_signal(int sig) {
  g_signal = sig;
  std::signal(sig, SIG_DFL);
}

}  // namespace

void install_exit_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
}

int received_exit_signal() {
  return g_signal;
}

}  // namespace mcore::training
