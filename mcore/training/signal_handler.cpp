#include "mcore/training/signal_handler.h"

#include <csignal>

namespace mcore::training {
namespace {

volatile std::sig_atomic_t g_signal = 0;

void on_signal(int sig) {
  if (g_signal != 0) {
    std::signal(sig, SIG_DFL);  // second signal: give the user their default behaviour back
  }
  g_signal = sig;
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
