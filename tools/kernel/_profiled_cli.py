"""``usbip-gadget`` under cProfile: the bench's profile of ``attach`` under load.

    _profiled_cli.py STATS ARGS...

Runs ``usbip_gadget.cli.main(ARGS)`` with the profiler on, and when it returns (SIGTERM makes
``attach`` unplug and return 0) writes the statistics to STATS (``pstats`` format). Only the
standard library and the package are imported, so any checkout's ``src`` on ``PYTHONPATH``
is what gets profiled.
"""

from __future__ import annotations

import cProfile
import sys


def run(stats: str, argv: list[str]) -> int:
    from usbip_gadget.cli import main

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        return main(argv)
    finally:
        profiler.disable()
        profiler.dump_stats(stats)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], sys.argv[2:]))
