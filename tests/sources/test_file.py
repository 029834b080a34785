"""sources.file directly: batches with positions, resuming, rotation, long lines, bad paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loyalty_ledger.events import MAX_LINE_BYTES
from loyalty_ledger.sources.file import SourceError, batches, open_source


def _write(path: Path, *lines: bytes) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def test_batches_carry_the_position_after_their_last_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", b'{"a": 1}', b"", b'{"a": 2}', b'{"a": 3}')
    with open_source(str(path)) as source:
        got = list(batches(source, source.resume_from(None), 2))
    assert [[line.position for line in lines] for lines, _ in got] == [[1, 3], [4]]
    assert [end.position for _, end in got] == [3, 4]  # the blank line is counted, not fed
    assert got[-1][1].byte_offset == path.stat().st_size


def test_resuming_reads_only_what_follows(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", b'{"a": 1}', b'{"a": 2}', b'{"a": 3}')
    with open_source(str(path)) as source:
        _, after = next(batches(source, source.resume_from(None), 2))
    with open_source(str(path)) as again:
        rest = list(batches(again, again.resume_from(after), 2))
    assert [line.raw for lines, _ in rest for line in lines] == [b'{"a": 3}']


def test_a_rewritten_or_truncated_file_starts_over(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", b'{"a": 1}', b'{"a": 2}')
    with open_source(str(path)) as source:
        *_, (_, end) = batches(source, source.resume_from(None), 10)
    _write(path, b'{"b": 1}', b'{"b": 2}')  # another first line: another file
    with open_source(str(path)) as rotated:
        assert rotated.resume_from(end).position == 0
    _write(path, b'{"a": 1}')  # same first line, shorter than the stored offset
    with open_source(str(path)) as truncated:
        assert truncated.resume_from(end).position == 0


def test_an_endless_line_keeps_only_its_head(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", b"x" * (3 * MAX_LINE_BYTES), b'{"a": 1}')
    with open_source(str(path)) as source:
        [(lines, end)] = list(batches(source, source.resume_from(None), 10))
    assert len(lines[0].raw) <= MAX_LINE_BYTES + 2 and lines[1].raw == b'{"a": 1}'
    assert end.byte_offset == path.stat().st_size


def test_a_fifo_is_read_as_a_stream(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = os.fork()
    if writer == 0:  # the child feeds the pipe and leaves without running pytest's teardown
        with open(fifo, "wb") as sink:
            sink.write(b'{"a": 1}\n')
        os._exit(0)
    with open_source(str(fifo)) as source:
        assert source.size_bytes is None and source.name.startswith("stream:")
        assert [line.raw for lines, _ in batches(source, source.resume_from(None), 5)
                for line in lines] == [b'{"a": 1}']  # fmt: skip
    os.waitpid(writer, 0)


@pytest.mark.parametrize("make", ["missing", "directory"])
def test_a_bad_path_is_one_clear_error(tmp_path: Path, make: str) -> None:
    path = tmp_path / "in.jsonl"
    if make == "directory":
        path.mkdir()
    with pytest.raises(SourceError, match=r"in\.jsonl"):
        open_source(str(path))
