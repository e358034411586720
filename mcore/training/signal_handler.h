// SIGTERM / SIGINT during training: the handler only records the signal; the trainer checks
// at the end of every iteration (agreeing across ranks), saves a checkpoint and exits cleanly,
// as Megatron's DistributedSignalHandler.
#pragma once

namespace mcore::training {

// Installs the handlers (idempotent). A second signal of the same kind while the first is
// pending restores the default action, so a stuck run can still be interrupted.
void install_exit_signal_handlers();
// The signal received since installation, or 0.
int received_exit_signal();

}  // namespace mcore::training
