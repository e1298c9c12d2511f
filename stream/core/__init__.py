"""The functional core: pure functions over plain records, unit-tested without Kafka.

Decoding and validation (``codec``, ``events``, ``steps``, ``pii``), the member stage
(``member``, ``profiles``, ``rules``, ``fraud``), surge detection (``surge``), the delivery
ledger (``delivery``), the watchdog policy (``watchdog``) and the error policy (``errors``).
Nothing here imports Faust or the worker (``pyproject.toml``'s import-linter contracts).
"""
