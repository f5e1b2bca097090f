// Preemption: SIGTERM and SIGUSR1 (what slurm sends before a time limit or a preemption; mpirun
// forwards SIGUSR1/2 to the ranks) only set a flag here. The trainer reduces the flag over every
// rank at each step boundary, so all ranks stop after the same step, save a checkpoint and exit
// with kExitRequeue.
//
// install_preemption_handlers() blocks both signals in the calling thread and every thread started
// after it, and receives them on a thread of its own: call it first thing in main, before MPI, OpenMP
// or oneDNN start threads (a signal handler running on a thread inside oneDNN's JIT GEMM corrupts
// the heap). Calling it again does nothing.
#pragma once

namespace kl {

void install_preemption_handlers();
bool preemption_requested();

}  // namespace kl
