"""Report timing: `loyalty report` on the ingest benchmark's stream, and its screenshot.

    python benchmarks/report.py [--events 200000] [--customers 20000] [--seed 1]
                                [--expiry-months 24] [--screenshot docs/report.png] [--keep DIR]

Generates the same deterministic stream as benchmarks/ingest.py, ingests it with
`loyalty ingest` into an embedded PostgreSQL (fsync on) in a temp folder, then times
`loyalty report` (catch-up, tier levels, CLV fit, queries, HTML) and a second run
(model already fitted). With --screenshot, headless Chromium saves the report as PNG.
The benchmark program's points live 24 months, longer than the stream: the README's
screenshot uses --expiry-months 12, so that expiry and breakage show too.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from ingest import PROGRAM, StreamMaker  # the sibling benchmark's generator

LOYALTY = str(Path(sys.executable).with_name("loyalty"))


def run(args: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([LOYALTY, *args], cwd=cwd, check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - started


def screenshot(html: Path, png: Path, workdir: Path) -> None:
    binary = shutil.which("chromium")
    if binary is None:
        raise SystemExit("chromium is missing: apt-get install chromium")
    subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--no-first-run",
         f"--user-data-dir={workdir / 'chromium'}", "--virtual-time-budget=8000",
         "--window-size=1400,2300", f"--screenshot={png.resolve()}", html.resolve().as_uri()],
        check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=300,
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--expiry-months", type=int, default=24, help="the program's [expiry]")
    parser.add_argument("--screenshot", type=Path, help="save the report as this PNG")
    parser.add_argument("--keep", type=Path, help="work (database, stream, report) here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="loyalty-report-") as temp:
        work = args.keep or Path(temp)
        work.mkdir(parents=True, exist_ok=True)
        lines = StreamMaker(args.events, args.customers, args.seed).make()
        months = f"[expiry]\nmonths = {args.expiry_months}"
        program = PROGRAM.replace("[expiry]\nmonths = 24", months)
        assert args.expiry_months == 24 or program != PROGRAM, "the benchmark program changed"
        (work / "program.toml").write_text(program, encoding="utf-8")
        (work / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"stream: {len(lines):,} lines, {args.customers:,} customers")
        seconds = run(["db", "start"], work)
        try:
            ingest = run(["ingest", "events.jsonl", "--program", "program.toml"], work)
            print(f"loyalty ingest: {ingest:.1f} s")
            first = run(["report", "--out", "report.html"], work)
            again = run(["report", "--out", "report.html"], work)
        finally:
            run(["db", "stop"], work)
        size = (work / "report.html").stat().st_size / 1e6
        print(f"loyalty report: {first:.1f} s (with the CLV fit), {again:.1f} s (model current); "
              f"{size:.1f} MB; db start {seconds:.1f} s")  # fmt: skip
        if args.screenshot:
            screenshot(work / "report.html", args.screenshot, work)
            print(f"screenshot: {args.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
