#!/usr/bin/python3
"""launch/study.sh's per-rank wrapper: runs the binary, forwards signals, and writes the child's peak
resident memory (getrusage of the waited-for child, MiB) and its CPU time (user + system, s) to
$KL_STUDY_RSS_DIR/rank_<rank> ($OMPI_COMM_WORLD_RANK, else 0).

    rank_wrapper.py BINARY ARGS...

The harness writes DIR/rank_wrapper.sh, which execs this file with the binary, and gives that
script to launch/mpirun.sh as KL_BIN. Exit status: the binary's, 128 + the signal that ended it.
"""
import os
import signal
import sys


def run(binary, args):
    """Runs binary with args as a child, forwarding SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 to it;
    returns (wait status, resource usage) of the child."""
    pid = os.fork()
    if pid == 0:
        os.execv(binary, [binary] + args)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(s, lambda number, frame: os.kill(pid, number))
    _, status, usage = os.wait4(pid, 0)
    return status, usage


def record(usage):
    """Writes 'PEAK_MIB CPU_S' to $KL_STUDY_RSS_DIR/rank_<rank> when KL_STUDY_RSS_DIR is set."""
    folder, rank = os.environ.get("KL_STUDY_RSS_DIR"), os.environ.get("OMPI_COMM_WORLD_RANK", "0")
    if folder:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "rank_" + rank), "w") as f:
            f.write("%.1f %.3f\n" % (usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime))


def main():
    """Runs sys.argv[1] with the other arguments, records its usage; returns its exit status."""
    status, usage = run(sys.argv[1], sys.argv[2:])
    record(usage)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main())
