"""The progress callback long operations report to: bytes read so far, and in all (None: stdin)."""

from collections.abc import Callable

Progress = Callable[[int, int | None], None]
