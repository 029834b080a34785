"""The projections' SQL files: where they live and their `create` and `apply` parts."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

# Tables first, then the view over them; the runner applies tables in this order.
ORDER = (
    "balance", "tier", "customer_value", "customer_membership", "customers",
    # the analysts' read models (README "Analysts"): their tables, then the views over them
    "ledger_clock", "customer_months", "customer_spend", "point_lots", "tier_moves",
    "referral_activity", "tier_levels", "clv_model", "customer_clv", "segments",
    "tier_progress", "tier_distribution", "points_liability", "points_liability_total",
    "retention", "repeat_purchase", "referrals",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Projection:
    name: str
    create: str
    apply: str | None  # None: a view, nothing to apply

    @property
    def table(self) -> bool:
        return self.apply is not None


def sql_dir() -> Path:
    """The installed copy (wheel) or, in a checkout, the repository's `projections/`."""
    installed = Path(__file__).parents[1] / "_projections"
    if installed.is_dir():
        return installed
    return Path(__file__).parents[3] / "projections"


def _parts(text: str) -> dict[str, str]:
    parts: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        marker = line.strip().lower()
        if marker in ("-- create", "-- apply"):
            current = parts.setdefault(marker[3:], [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in parts.items()}


@cache
def projections() -> tuple[Projection, ...]:
    found = []
    for name in ORDER:
        path = sql_dir() / f"{name}.sql"
        parts = _parts(path.read_text(encoding="utf-8"))
        assert "create" in parts, f"{path} has no '-- create' part"
        found.append(Projection(name, parts["create"], parts.get("apply")))
    return tuple(found)
