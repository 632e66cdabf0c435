"""Run a command and record its peak resident set size: `python peak_rss.py OUT CMD ARGS...`.

A process's ru_maxrss counts the memory of the process it was forked from, up to its
exec (Linux keeps the larger of the two), so a runner started straight from pytest
reports pytest's size if that is larger. This small wrapper forks the command from
itself instead, waits for it with wait4 (the rusage of that one child), writes the peak
in KiB to OUT, forwards SIGTERM and SIGINT to it, and exits with its exit status.
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> int:
    out, command = sys.argv[1], sys.argv[2:]
    pid = os.fork()
    if pid == 0:  # the child: becomes the command
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda s, _frame: os.kill(pid, s))
    _, status, usage = os.wait4(pid, 0)
    with open(out, "w") as f:
        f.write(f"{usage.ru_maxrss}\n")
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell says


if __name__ == "__main__":
    sys.exit(main())
