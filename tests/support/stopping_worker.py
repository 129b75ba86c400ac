"""The counter worker, stopping itself at one step of the protocol: for tests only.

``python -m tests.support.stopping_worker`` runs ``countersign worker`` with an ``on_step`` hook
that SIGSTOPs the process the first time it reaches the step named by
COUNTERSIGN_TEST_WORKER_STOP_AT (one of counter_worker.worker.STEPS), so that a test can
kill or freeze a real worker at that exact point, then thaw it with SIGCONT.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from counter_worker.main import main
from counter_worker.worker import STEPS

STOP_AT_VARIABLE = "COUNTERSIGN_TEST_WORKER_STOP_AT"

log = logging.getLogger("counter_worker")


def stop_once_at(step: str) -> None:
    stopped = False

    def on_step(name: str) -> None:
        nonlocal stopped
        if name == step and not stopped:
            stopped = True
            log.warning("stopping at %s (%s)", name, STOP_AT_VARIABLE)
            os.kill(os.getpid(), signal.SIGSTOP)

    main(on_step=on_step)


if __name__ == "__main__":
    step = os.environ.get(STOP_AT_VARIABLE, "")
    if step not in STEPS:
        sys.exit(f"{STOP_AT_VARIABLE} must be one of {', '.join(STEPS)}")
    stop_once_at(step)
