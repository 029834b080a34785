"""Errors are types under one base: every exception class the package defines for its users
is a LoyaltyError, so the command line catches the base once and never prints a traceback."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

import pytest

import loyalty_ledger
from loyalty_ledger.errors import LoyaltyError, UserError
from loyalty_ledger.kafka.settings import KafkaSettings
from loyalty_ledger.runtime import consume as consume_module

# Raised and caught inside the pipeline, never shown to a user (see store/batch.py).
INTERNAL = {"loyalty_ledger.store.batch.InputRefused"}


def _modules() -> list[Any]:
    names = [m.name for m in pkgutil.walk_packages(loyalty_ledger.__path__, "loyalty_ledger.")]
    return [importlib.import_module(n) for n in names if ".migrations" not in n]


def test_every_error_the_package_defines_is_a_loyalty_error() -> None:
    defined = {
        f"{module.__name__}.{name}": cls
        for module in _modules()
        for name, cls in inspect.getmembers(module, inspect.isclass)
        if cls.__module__ == module.__name__ and issubclass(cls, Exception)
    }
    assert len(defined) > 10
    strays = [n for n, cls in defined.items() if not issubclass(cls, LoyaltyError)]
    assert sorted(strays) == sorted(INTERNAL)


def test_topics_with_different_partition_counts_are_a_user_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counts = {"x.inputs": 4, "x.internal": 2}
    monkeypatch.setattr(consume_module, "partition_count", lambda _s, topic: counts[topic])
    monkeypatch.setattr(consume_module.programs, "adopt", lambda *_a: None)
    settings = KafkaSettings(bootstrap="127.0.0.1:9", prefix="x", extra={})
    with pytest.raises(UserError, match=r"x\.internal has 2 partitions and x\.inputs 4"):
        consume_module.consume(None, settings, None, None)  # type: ignore[arg-type]


def test_no_function_is_over_70_lines() -> None:
    """Short functions (the house style): branch in the parent, keep the leaves pure."""
    import ast
    from pathlib import Path

    root = Path(loyalty_ledger.__file__).parent
    long = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > 70:
                    long.append(f"{path.relative_to(root)}:{node.lineno} {node.name} {size}")
    assert not long
