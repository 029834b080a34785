"""Operators' commands on the benchmark stream: rerun, compare, promote and verify beside ingest.

    python benchmarks/rerun.py [--events 200000] [--customers 20000] [--seed 1] [--keep DIR]
                               [--baseline-src DIR] [--rounds 1]

1. Generates the stream of benchmarks/ingest.py (StreamMaker, PROGRAM; seeded).
2. Starts one PostgreSQL (LOYALTY_DATABASE_URL when set, else the embedded one
   with fsync on) and, on one fresh, migrated database, times each command as a
   user runs it (a subprocess, startup included):
   a. `loyalty ingest STREAM --program P`: the reference for the ratios;
   b. `loyalty rerun --program P --as same`: the whole inbox replayed;
   c. `loyalty rerun --program P2 --as richer` (earning 1.5x as many points);
   d. `loyalty rerun --program P --as whatif --until T`: only the inputs that
      occurred up to T, the occurred_at of the stream's middle line (about half);
   d'. `loyalty rerun --preview --program P --until T`: the same what-if decided in
      memory, one process per core, nothing written (a tree without it shows "-");
   e. `loyalty compare live richer`;
   f. `loyalty promote richer` (caught up already: the lock window and the flip);
   g. `loyalty verify` (hash chain, versions, conservation, projections vs rebuild).
3. Prints a table with events/s (input lines over seconds) and the ratio to ingest,
   each command's CPU and the server's meanwhile, and their floor: that CPU over the
   machine's cores, the fewest seconds the same work could take here,
   and the compare report.

`--baseline-src DIR` also runs every command importing the package from DIR (an
older commit's `src/`, e.g. a `git worktree add`) on a database of its own, migrated
by that tree before the clock starts, each command right after this tree's same
command: on a noisy machine only figures taken side by side compare. The table then
shows both, best of `--rounds`, and this tree's seconds over the baseline's (below
1: this tree is faster); and whether the two compare reports are the same.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any


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


@dataclass(frozen=True, slots=True)
class Tree:
    """The package under test: this tree (src None) or an older commit's `src/`."""

    name: str
    src: Path | None
    dbname: str


@dataclass(slots=True)
class Timings:
    """Seconds per step, every round, of one tree; and its last compare report."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    usages: dict[str, list[Any]] = field(default_factory=dict)  # bench.Usage, as seconds
    report: str = ""

    def best(self, step: str) -> float:
        return min(self.seconds[step])

    def best_usage(self, step: str) -> Any:
        """The CPU figures of the round `best` shows."""
        runs = self.seconds[step]
        return self.usages[step][runs.index(min(runs))]


def timed(command: list[str], env: dict[str, str], postmaster: int | None) -> Any:
    """`bench.Ran`: seconds, output, its CPU and the server's meanwhile."""
    done = bench.run_measured([bench.loyalty_command(), *command], env, postmaster)
    if done.returncode not in (0, 1):
        raise SystemExit(f"loyalty {' '.join(command)} failed:\n{done.stderr[-3000:]}")
    if done.returncode == 1:  # compare: the generations differ; verify: something is broken
        print(f"(loyalty {command[0]} exited with 1)")
        if command[0] == "verify":  # what it found matters more than how long it took
            print(done.stdout[-2000:] + done.stderr[-2000:])
    return done


def steps(stream: Path, program: Path, richer: Path, until: str) -> list[tuple[str, list[str]]]:
    return [
        ("ingest", ["ingest", str(stream), "--program", str(program)]),
        ("rerun, same program", ["rerun", "--program", str(program), "--as", "same"]),
        ("rerun, richer program", ["rerun", "--program", str(richer), "--as", "richer"]),
        ("rerun what-if, until half-way",
         ["rerun", "--program", str(program), "--as", "whatif", "--until", until]),
        ("rerun --preview, the same what-if",
         ["rerun", "--preview", "--program", str(program), "--until", until]),
        ("compare live richer", ["compare", "live", "richer"]),
        ("promote richer", ["promote", "richer"]),
        ("verify", ["verify"]),
    ]  # fmt: skip


def one_round(
    pg: Any, trees: list[Tree], commands: list[tuple[str, list[str]]],
    timings: dict[str, Timings],
) -> None:
    """Every command on a fresh database per tree, the trees' runs of a command back to back."""
    envs = {t.name: bench.database_env(t.src, pg.fresh(t.dbname, src=t.src)) for t in trees}
    for name, command in commands:
        for tree in trees:
            if "--preview" in command and not _has_preview(envs[tree.name]):
                print(f"{name}, {tree.name}: not in this tree")
                continue
            done = timed(command, envs[tree.name], pg.postmaster_pid())
            timings[tree.name].seconds.setdefault(name, []).append(done.seconds)
            timings[tree.name].usages.setdefault(name, []).append(done.usage)
            if command[0] == "compare":
                timings[tree.name].report = done.stdout
            print(f"{name}, {tree.name}: {done.seconds:.1f} s, {done.usage}")


def _has_preview(env: dict[str, str]) -> bool:
    """Whether the tree `env` imports has `rerun --preview` (an older commit has not)."""
    shown = subprocess.run([bench.loyalty_command(), "rerun", "--help"], env=env,
                           capture_output=True, text=True, check=False)  # fmt: skip
    return "--preview" in shown.stdout


def side_by_side(mine: Timings, base: Timings, names: list[str], n_lines: int) -> str:
    head = ("command (best of rounds)", "this tree s", "baseline s", "this events/s",
            "baseline events/s", "this/baseline")  # fmt: skip
    body = []
    for name in names:
        if name not in base.seconds:
            a = mine.best(name)
            body.append((name, f"{a:.2f}", "-", f"{n_lines / a:,.0f}", "-", "-"))
            continue
        a, b = mine.best(name), base.best(name)
        body.append((name, f"{a:.2f}", f"{b:.2f}", f"{n_lines / a:,.0f}", f"{n_lines / b:,.0f}",
                     f"{a / b:.3f}"))  # fmt: skip
    shown: str = bench.aligned(head, body)
    return shown


def half_way(lines: list[str]) -> str:
    """The occurred_at of the middle line (the first readable one from there): the inputs
    up to it are about half of the stream, which arrives in about occurrence order."""
    for line in lines[len(lines) // 2 :]:
        at = _occurred_at(line)
        if at is not None:
            return at.isoformat()
    raise SystemExit("no readable occurred_at in the second half of the stream")


def _occurred_at(line: str) -> datetime | None:
    try:
        return datetime.fromisoformat(json.loads(line)["occurred_at"])
    except (ValueError, TypeError, KeyError):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="write program and stream here and keep them")
    parser.add_argument("--baseline-src", type=Path, metavar="DIR",
                        help="also run every command importing the package from DIR (an older "
                        "commit's src/), on its own database, interleaved")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds, each on fresh databases; the best is shown (1)")  # fmt: skip
    args = parser.parse_args()
    trees = [Tree("this tree", None, "bench_rerun")]
    if args.baseline_src:
        trees.append(Tree(f"baseline {args.baseline_src}", args.baseline_src, "bench_rerun_base"))
    timings = {t.name: Timings() for t in trees}
    with tempfile.TemporaryDirectory(prefix="loyalty-bench-") as tmp:
        workdir = Path(tmp)
        outdir = args.keep or workdir
        outdir.mkdir(parents=True, exist_ok=True)
        program, stream, lines = bench.write_stream(outdir, args.events, args.customers, args.seed)
        richer = outdir / "richer.toml"
        richer.write_text(_richer(bench.PROGRAM), encoding="utf-8")
        until = half_way(lines)
        print(f"generated {len(lines):,} lines for {args.customers:,} customers: {outdir}")
        until_at = datetime.fromisoformat(until)
        upto = sum(1 for line in lines if (at := _occurred_at(line)) and at <= until_at)
        print(f"what-if until {until}: {upto:,} of {len(lines):,} lines occurred by then")
        commands = steps(stream, program, richer, until)
        with bench.postgres(workdir) as pg:
            for round_ in range(1, args.rounds + 1):
                if args.rounds > 1:
                    print(f"round {round_}")
                one_round(pg, trees, commands, timings)
    names = [name for name, _ in commands]
    mine = timings[trees[0].name]
    figures = [bench.Figure(name, len(lines), mine.best(name), usage=mine.best_usage(name))
               for name in names]  # fmt: skip
    print()
    print(bench.table(figures, figures[0]))
    print(f"(events/s: the stream's {len(lines):,} lines over the seconds; the what-if replays "
          f"{upto:,} of them. floor: the command's CPU and the server's over {bench.CPUS} cores, "
          "the fewest seconds that work could take here however well overlapped)")
    if len(trees) > 1:
        base = timings[trees[1].name]
        print()
        print(side_by_side(mine, base, names, len(lines)))
        same = "the same" if mine.report == base.report else "DIFFERENT"
        print(f"\ncompare live richer: the two trees' reports are {same}")
    print("\n" + mine.report)
    return 0


def _richer(program: str) -> str:
    """The program earning half as many points again per unit."""
    for line in program.splitlines():
        if line.startswith("points_per_unit"):
            value = line.split("=", 1)[1].strip().strip('"')
            return program.replace(line, f'points_per_unit = "{Decimal(value) * 3 / 2}"', 1)
    raise SystemExit("the benchmark program has no points_per_unit")


if __name__ == "__main__":
    sys.exit(main())
