"""Which decoder for the wire schema: msgspec (strict, typed) against parse-only baselines.

    python -m bench.bench_decode

Prints µs per payload for a 1-sample and a 50-sample metrics event: msgspec decoding
*with* full validation into typed structs, against stdlib ``json.loads`` and (when
installed) ``orjson.loads`` that only parse, without validating anything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from bench.common import machine, median_of, metrics_payload
from monitor.events import decode_event

ROUNDS = 20_000


def per_call_us(fn: Callable[[bytes], object], payload: bytes) -> float:
    def one() -> float:
        start = time.perf_counter()
        for _ in range(ROUNDS):
            fn(payload)
        return (time.perf_counter() - start) / ROUNDS * 1e6
    return median_of(5, one)[0]


def main() -> None:
    decoders: dict[str, Callable[[bytes], object]] = {
        "msgspec strict decode + validate": lambda p: decode_event("metrics", p),
        "json.loads (parse only)": json.loads,
    }
    try:
        import orjson

        decoders["orjson.loads (parse only)"] = orjson.loads
    except ImportError:
        pass
    print(f"decode, µs per payload (median of 5 x {ROUNDS}); {machine()}")
    for samples in (1, 50):
        payload = metrics_payload(1, samples)
        print(f"  {samples:>2} sample(s), {len(payload)} bytes:")
        for name, fn in decoders.items():
            print(f"    {name:<36} {per_call_us(fn, payload):8.2f}")


if __name__ == "__main__":
    main()
