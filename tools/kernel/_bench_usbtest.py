"""The generic bulk bench's figures: usbtest's simple bulk tests timed on one path.

The ioctl itself (a child process per ioctl, abandoned after a deadline) is the kernel tier's
``tests.kernel._usbtest``, imported with the checkout on ``sys.path`` (bench.py puts it there);
its errors and results are re-exported here for the bench's other modules.
"""

from __future__ import annotations

from pathlib import Path

from tests.kernel._usbtest import Run, UsbtestError, UsbtestTimeout, run_test

__all__ = ["Run", "UsbtestError", "UsbtestTimeout", "bulk_rate", "run_test"]

TEST_BULK_WRITE, TEST_BULK_READ = 1, 2  # usbtest's test_num: simple_io on the bulk OUT / IN pipe
URB_LENGTH = 64 * 1024
ITERATIONS = 64
PROBE_ITERATIONS = 8
BUDGET_S = 90.0  # a run that would take longer is measured on its probe alone
DEADLINE_S = 120.0  # then the child is abandoned


def bulk_rate(node: Path, test: int) -> Run:
    """``test`` over ITERATIONS URBs of URB_LENGTH bytes, after a probe of PROBE_ITERATIONS.

    When the probe says the full run would take more than BUDGET_S, the probe is the figure
    (``Run.iterations`` tells): the same URBs, fewer of them, so MB/s stay comparable.
    """
    probe = run_test(node, test, PROBE_ITERATIONS, URB_LENGTH, deadline_s=DEADLINE_S)
    if probe.wall_s * ITERATIONS / PROBE_ITERATIONS > BUDGET_S:
        return probe
    return run_test(node, test, ITERATIONS, URB_LENGTH, deadline_s=DEADLINE_S)
