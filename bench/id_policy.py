"""How often the field policy pseudonymises a reference id that carries no PII, and how fast
it decides: random ids of the common shapes (fixed seed, 2,000 each), judged by
``stream.core.pii.pii_in_id``, the check behind ``reference`` fields. A pseudonymised
reference still joins (the same id gives the same pseudonym); it is only less readable.

    .venv/bin/python bench/id_policy.py
"""

from __future__ import annotations

import random
import time
import uuid

from stream.core.pii import pii_in_id

N = 2000


def shapes(rng: random.Random) -> dict[str, list[str]]:
    def digits(n: int) -> str:
        return str(rng.randrange(10 ** (n - 1), 10**n))

    return {
        "uuid4": [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(N)],
        "zero-padded sequence (rev-7-000123456)": [
            f"rev-{rng.randrange(10)}-{rng.randrange(10**6):09d}" for _ in range(N)
        ],
        "snowflake (19 digits)": [digits(19) for _ in range(N)],
        "ASIN (B0 + 8)": [
            "B0" + "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(8))
            for _ in range(N)
        ],
        "order-<10 digits> (id word)": [f"order-{digits(10)}" for _ in range(N)],
        **{f"x-<{n} digits>": [f"x-{digits(n)}" for _ in range(N)] for n in (8, 10, 11, 12, 13)},
    }


def main() -> None:
    rng = random.Random(20)
    print("| id shape | pseudonymised | µs per id (uncached) |")
    print("|---|---|---|")
    for name, ids in shapes(rng).items():
        pii_in_id.cache_clear()
        started = time.perf_counter()
        flagged = sum(pii_in_id(value) is not None for value in ids)
        micros = (time.perf_counter() - started) / len(ids) * 1e6
        print(f"| {name} | {flagged / len(ids):.3f} | {micros:.1f} |")


if __name__ == "__main__":
    main()
