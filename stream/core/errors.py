"""What happens when something goes wrong while processing: the policy, in one place.

- **Bad input** (not JSON or UTF-8, schema, event time, an oversized value or key): the edge
  dead-letters it with its reason; never retried.
- **One event fails inside a stage** (an exception in the edge, member or surge step for that
  event): dead letter ``processing_error`` with the stage and exception, and the worker goes on
  (``RISKSTREAM_PROCESSING_ERROR_POLICY=continue``, the default) or stops (``fail``).
- **Not about the event** (producer or broker failing, the model failing a whole batch,
  reading the table): the worker stops hard, before any further commit.

Faust would ack the events of a raising agent and commit past them, losing them; so a fatal
failure exits at once, and a supervisor (``riskstream run``, docker's restart policy, k8s)
starts the worker again from the last committed offsets. At-least-once, nothing lost. A
``processing_error`` is counted per stage in ``riskstream_stream_processing_errors``; fatal
stops show as worker restarts (the runner counts them) and in the log.
"""

from __future__ import annotations

import enum
import logging
import os
import sys
import traceback

logger = logging.getLogger("riskstream.errors")


class FailurePolicy(enum.Enum):
    """``RISKSTREAM_PROCESSING_ERROR_POLICY``: what one event's processing error does."""

    CONTINUE = "continue"  # dead-letter the event (processing_error) and go on
    FAIL = "fail"  # stop the worker before it commits: the event is retried after a restart


#: Exit code of a worker stopped by ``fatal`` (EX_SOFTWARE).
FATAL_EXIT_CODE = 70


def fatal(exc: BaseException, where: str) -> None:
    """Log the failure with its position and exit without committing further offsets."""
    logger.critical("fatal error while processing %s: %r", where, exc)
    traceback.print_exception(exc, file=sys.stderr)
    sys.stderr.flush()
    os._exit(FATAL_EXIT_CODE)
