"""Operators' commands on the benchmark stream: rerun, compare, promote and verify beside ingest.

    python benchmarks/rerun.py [--events 200000] [--customers 20000] [--seed 1] [--keep DIR]

1. Generates the stream of benchmarks/ingest.py (StreamMaker, PROGRAM; seeded).
2. Starts one PostgreSQL (LOYALTY_DATABASE_URL when set, else the embedded one
   with fsync on) and, on one fresh database, times each command as a user
   runs it (a subprocess, startup included):
   a. `loyalty ingest STREAM --program P`: the baseline;
   b. `loyalty rerun --program P --as same`: the whole inbox replayed;
   c. `loyalty rerun --program P2 --as richer` (earning 1.5x as many points);
   d. `loyalty compare live richer`;
   e. `loyalty promote richer` (caught up already: the lock window and the flip);
   f. `loyalty verify` (hash chain, versions, conservation, projections vs rebuild).
3. Prints a table with events/s (input lines over seconds) and the ratio to ingest,
   and the compare report.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType


def _load_ingest_benchmark() -> ModuleType:
    path = Path(__file__).with_name("ingest.py")
    spec = importlib.util.spec_from_file_location("loyalty_bench_ingest", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


bench = _load_ingest_benchmark()


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    loyalty = shutil.which("loyalty", path=str(Path(sys.executable).parent)) or "loyalty"
    started = time.perf_counter()
    done = subprocess.run([loyalty, *command], env=env, capture_output=True, text=True,
                          check=False)  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"loyalty {' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="write program and stream here and keep them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="loyalty-bench-") as tmp:
        workdir = Path(tmp)
        outdir = args.keep or workdir
        outdir.mkdir(parents=True, exist_ok=True)
        program, stream, lines = bench.write_stream(outdir, args.events, args.customers, args.seed)
        richer = outdir / "richer.toml"
        richer.write_text(_richer(bench.PROGRAM), encoding="utf-8")
        print(f"generated {len(lines):,} lines for {args.customers:,} customers: {outdir}")
        with bench.postgres(workdir) as pg:
            env = {**os.environ, "LOYALTY_DATABASE_URL": pg.fresh("bench_rerun")}
            steps = [
                ("ingest (baseline)", ["ingest", str(stream), "--program", str(program)]),
                ("rerun, same program", ["rerun", "--program", str(program), "--as", "same"]),
                ("rerun, richer program", ["rerun", "--program", str(richer), "--as", "richer"]),
                ("compare live richer", ["compare", "live", "richer"]),
                ("promote richer", ["promote", "richer"]),
                ("verify", ["verify"]),
            ]
            figures, report = [], ""
            for name, command in steps:
                seconds, out = timed(command, env)
                figures.append(bench.Figure(name, len(lines), seconds))
                report = out if command[0] == "compare" else report
                print(f"{name}: {seconds:.1f} s")
    print()
    print(bench.table(figures, figures[0]))
    print("\n" + report)
    return 0


def _richer(program: str) -> str:
    """The program earning half as many points again per unit."""
    for line in program.splitlines():
        if line.startswith("points_per_unit"):
            value = line.split("=", 1)[1].strip().strip('"')
            from decimal import Decimal

            return program.replace(line, f'points_per_unit = "{Decimal(value) * 3 / 2}"', 1)
    raise SystemExit("the benchmark program has no points_per_unit")


if __name__ == "__main__":
    sys.exit(main())
