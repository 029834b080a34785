"""Decode speed: microseconds per line of `events.decode`, best of interleaved rounds.

    python benchmarks/decode.py [STREAM] [--lines 100000] [--rounds 3] [--against SRC]

STREAM is a JSON Lines file (a benchmark stream, say); without one, a mix of purchases
(half with items), signups and redemptions is generated. `--against SRC` also loads
SRC/loyalty_ledger/events.py (another checkout's) under another name and alternates the
two, round by round, so that a noisy machine slows both alike. CPU time, not wall time.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loyalty_ledger import events


def generated(count: int) -> list[bytes]:
    lines = []
    for n in range(count):
        at = f"2025-{n % 12 + 1:02d}-{n % 28 + 1:02d}T{n % 24:02d}:{n % 60:02d}:00+01:00"
        body: dict[str, Any] = {"event_id": f"e{n}", "occurred_at": at, "customer_id": f"c{n}"}
        if n % 10 == 0:
            body.update(type="signup", email=f"c{n}@example.org", birth_date="1990-05-17")
        elif n % 10 == 1:
            body.update(type="redemption", redemption_id=f"r{n}", reward_id="voucher-5")
        else:
            item = {"sku": "S-1", "category": "shoes", "quantity": 2, "unit_price": "29.95"}
            body.update(type="purchase", order_id=f"o{n}", currency="EUR", total="59.90",
                        items=[item] if n % 2 else [], channel="web")  # fmt: skip
        lines.append(json.dumps(body).encode() + b"\n")
    return lines


def load(src: str) -> Callable[[bytes], object]:
    spec = importlib.util.spec_from_file_location(
        "events_against", Path(src) / "loyalty_ledger" / "events.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    decode: Callable[[bytes], object] = module.decode
    return decode


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stream", nargs="?")
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", metavar="SRC")
    args = parser.parse_args(argv)
    if args.stream:
        with open(args.stream, "rb") as f:
            lines = list(itertools.islice(f, args.lines))
    else:
        lines = generated(args.lines)
    decoders: dict[str, Callable[[bytes], object]] = {events.__file__ or "this": events.decode}
    if args.against:
        decoders[args.against] = load(args.against)
    best = dict.fromkeys(decoders, float("inf"))
    for _ in range(args.rounds):
        for name, decode in decoders.items():
            start = time.process_time()
            for raw in lines:
                decode(raw)
            best[name] = min(best[name], time.process_time() - start)
    for name, seconds in best.items():
        print(f"{seconds / len(lines) * 1e6:6.2f} µs/line  {name}  ({len(lines)} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
