"""The worker's tables hold each value as its JSON bytes, not as Python objects.

Faust keeps a ``memory://`` table's values as the objects it was given and serialises every
write with its own JSON codec for the changelog. Stored as orjson bytes instead (the table's
value serializer is ``raw``), a member costs its JSON size in memory (about 2.5 KB with a full
history, against 12.9 KiB as nested dicts and lists, ``bench/member_state_size.py``), a write is
serialised once by orjson, and a changelog written by Faust's JSON codec before still reads:
both are the same JSON text.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import orjson


def _decoded(raw: Any) -> Any:
    return orjson.loads(raw) if isinstance(raw, bytes | bytearray | memoryview) else raw


class JsonValues(MutableMapping[str, Any]):
    """A mapping view of a table whose values are JSON bytes: decoded on read, encoded on
    write. A value that is already decoded (a table written in process) passes through."""

    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table

    def __getitem__(self, key: str) -> Any:
        raw = self.table.get(key)
        if raw is None:
            raise KeyError(key)
        return _decoded(raw)

    def items(self) -> Iterator[tuple[str, Any]]:  # type: ignore[override]
        """Pairs read together: a ``rocksdb://`` table lists keys (of standby partitions too)
        that a lookup by key does not find, which the default (keys, then a lookup each) turned
        into a ``KeyError`` in the surge stage (``tests/stream/test_rocksdb_store.py``)."""
        for key, raw in self.table.items():
            if raw is not None:
                yield key, _decoded(raw)

    def __setitem__(self, key: str, value: Any) -> None:
        self.table[key] = orjson.dumps(value)

    def __delitem__(self, key: str) -> None:
        del self.table[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)

    def __contains__(self, key: object) -> bool:
        return self.table.get(key) is not None  # type: ignore[arg-type]
