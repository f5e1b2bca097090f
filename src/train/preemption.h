// Preemption: SIGTERM and SIGUSR1 (what slurm sends before a time limit or a preemption; mpirun
// forwards SIGUSR1/2 to the ranks) only set a flag here. The trainer reduces the flag over every
// rank at each step boundary, so all ranks stop after the same step, save a checkpoint and exit
// with kExitRequeue.
#pragma once

namespace kl {

void install_preemption_handlers();
bool preemption_requested();

}  // namespace kl
