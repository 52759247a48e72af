"""One command's wall time, CPU time (user + system) and peak RSS, measured alone: `python -m benchmarks.measure
COMMAND...` runs it (its output to stderr) and prints them as one JSON line.

Why a process of its own: Linux keeps, at exec, the larger of the old and the new peak RSS, so a command started by a
process that holds torch and exported models reports at least that process's memory. This small process forks it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main(command: list[str]) -> int:
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=sys.stderr)
    _, status, usage = os.wait4(process.pid, 0)
    print(json.dumps({"wall_s": time.perf_counter() - start, "cpu_s": usage.ru_utime + usage.ru_stime,
                      "peak_rss_gb": usage.ru_maxrss / 2**20}), flush=True)  # ru_maxrss: KiB on Linux
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
