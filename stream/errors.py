"""What happens when something goes wrong while processing.

Bad *input* never reaches here: the codec turns it into a dead letter. What reaches here is a
bug or an outage (model backend failing, producer unable to send). Faust would ack the events
of a raising agent and commit past them, losing them; so instead the worker stops hard, before
any further commit, and a supervisor (``riskstream run``, docker's restart policy, k8s) starts
it again from the last committed offsets. At-least-once, nothing lost.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

logger = logging.getLogger("riskstream.errors")

#: Exit code of a worker stopped by ``fatal`` (EX_SOFTWARE).
FATAL_EXIT_CODE = 70


def fatal(exc: BaseException, where: str) -> None:
    """Log the failure with its position and exit without committing further offsets."""
    logger.critical("fatal error while processing %s: %r", where, exc)
    traceback.print_exception(exc, file=sys.stderr)
    sys.stderr.flush()
    os._exit(FATAL_EXIT_CODE)
