"""Ingest throughput: the `loyalty ingest` command against two write-path baselines.

    python benchmarks/ingest.py [--events 200000] [--customers 20000] [--seed 1]
                                [--naive-events 20000] [--keep DIR] [--profile N]
                                [--v2] [--baseline-src DIR] [--rounds 2] [--generate-only]

1. Generates a deterministic (seeded) two-year stream for a program like the
   conformance ones (EUR, Europe/Berlin): signups (some referred, with birth
   dates, newsletter opt-ins), purchases with and without items over pos, web
   and app, partial and full returns, referrals, redemptions (some refused),
   actions, a weekly tick, ~0.1% malformed lines, ~0.5% duplicated event ids
   and ~2% late arrivals. Program and stream go to a temp dir (or `--keep DIR`).
2. Starts one PostgreSQL for every measurement: the server of
   LOYALTY_DATABASE_URL when set, else the embedded one with fsync on. Each
   measurement gets a fresh, migrated database.
3. Measures, on the same stream:
   a. end to end: `loyalty ingest STREAM --program PROGRAM` as a subprocess
      (startup, decode, decide, batched writes, projections);
   b. naive: decode + decide in-process, then per event one transaction with
      one INSERT per ledger entry and one into the inbox (first N lines only);
   c. COPY: the whole stream's ledger rows, decided before the clock starts,
      written with one COPY in one transaction: the floor of the write path.
   It also times the engine alone (decode + decide, no database).
4. Prints a table with the ratio of each figure to end to end, and the machine.
   Beside each end-to-end figure: the `loyalty ingest` process's own peak RSS
   (VmHWM from /proc, sampled: a child's ru_maxrss starts at this script's
   size) and CPU seconds (user + sys, from `os.wait4` on it), and the CPU seconds the
   PostgreSQL server spent meanwhile (its postmaster's and live children's
   utime+stime+cutime+cstime from /proc, before and after; "?" when the server
   is not on this machine).

`--baseline-src DIR` also times end to end importing the package from DIR (an
older commit's `src/`, e.g. a `git worktree add`), interleaved with this tree
`--rounds` times, each migrating its own empty database inside its time.

`--generate-only` writes program and stream, prints the time and this script's
peak RSS, and stops (300,000 events for 100,000 customers: about 12 s and
280 MB here, so a few GB and a couple of minutes for 3,000,000 and 1,000,000).

`--v2` also generates a version 2 program (pending points, a shop's two years
of campaigns, two paid membership plans, transfers) and a stream of the same
length and seed with memberships, transfers and adjustments mixed in (some of
each refused), and times `loyalty ingest` on version 1 and version 2 end to
end, interleaved `--rounds` times on the same server, side by side.

`--profile N` also runs the in-process ingest (the `Pipeline` behind the CLI)
under cProfile on a fresh database and prints the top functions.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import cProfile
import dataclasses
import hashlib
import itertools
import json
import os
import platform
import pstats
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from loyalty_ledger import events as ev
from loyalty_ledger.engine import CustomerState, Decision, Rules, compile_rules, decide, decide_tick
from loyalty_ledger.engine.dates import next_due_at
from loyalty_ledger.generations.migrate import migrate
from loyalty_ledger.ledger.chain import GENESIS, keyed_chain, keyed_hash
from loyalty_ledger.ledger.entries import COLUMNS, row
from loyalty_ledger.program import parse_program
from loyalty_ledger.store import embedded
from loyalty_ledger.store.db import connect, psycopg_url, redact

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2024, 1, 1, 6, 0, tzinfo=BERLIN).astimezone(UTC)
SPAN = timedelta(days=730)
BENCH_KEY = bytes(range(32))  # the baselines chain under a key, as the write path does

PROGRAM = """\
[program]
name = "Benchmark Club"
currency = "EUR"
timezone = "Europe/Berlin"

[earn]
points_per_unit = "1"
category_multipliers = { shoes = "2", beauty = "1.5", coffee = "0" }
channel_multipliers = { app = "1.5", pos = "1" }

[expiry]
months = 24

[tiers]
window_days = 365
[[tiers.levels]]
name = "bronze"
min_spend = "0"
multiplier = "1"
[[tiers.levels]]
name = "silver"
min_spend = "500"
multiplier = "1.25"
[[tiers.levels]]
name = "gold"
min_spend = "2000"
multiplier = "1.5"

[signup]
bonus = 100

[birthday]
bonus = 250

[referral]
referrer_bonus = 500
referee_bonus = 100
min_first_purchase = "20"
[[referral.ladder]]
count = 3
reward = "tote-bag"
[[referral.ladder]]
count = 5
reward = "headphones"
[[referral.ladder]]
count = 10
reward = "weekend-trip"

[[actions]]
name = "newsletter_subscribed"
points = 50
max_per_customer = 1
[[actions]]
name = "review_written"
points = 20
max_per_customer = 10
[[actions]]
name = "app_installed"
points = 100
max_per_customer = 1
[[actions]]
name = "survey_completed"
points = 10

[[stamp_cards]]
id = "coffee-card"
every = 10
min_total = "2.50"
categories = ["coffee"]
reward = "free-coffee"
[[stamp_cards]]
id = "visit-card"
every = 12
min_total = "30.00"
reward = "visit-voucher"

[[rewards]]
id = "free-shipping"
cost = 300
[[rewards]]
id = "voucher-5"
cost = 500
[[rewards]]
id = "voucher-10"
cost = 900
[[rewards]]
id = "voucher-25"
cost = 2000

[redemption]
min_points = 100
"""

# Version 2 (PROGRAM.md "Version 2"): the sections a shop adds once its program is live;
# the campaigns are generated, one block per campaign (see `_campaigns`).
PROGRAM_V2_SECTIONS = """\

[pending]
days = 14

[[memberships]]
id = "plus"
days = 365
fee = "49.00"
member_fee = "29.00"
member_fee_min_balance = 1000
multiplier = "1.1"
[[memberships]]
id = "plus-monthly"
days = 30
fee = "4.90"
multiplier = "1.1"

[transfers]
min_points = 100
"""


def _campaign(id_: str, starts_at: datetime, ends_at: datetime, **rules: object) -> str:
    lines = ["[[campaigns]]", f'id = "{id_}"', f'starts_at = "{starts_at.isoformat()}"',
             f'ends_at = "{ends_at.isoformat()}"']  # fmt: skip
    lines += [f"{key} = {json.dumps(value)}" for key, value in rules.items()]
    return "\n".join(lines) + "\n"


def _campaigns() -> str:
    """Two years of a shop's campaigns (34): double points on shoes online on the second
    weekend of every month, a bonus week for silver and gold each quarter, Black Friday's
    week on everything."""
    blocks = []
    for month in range(24):
        first = date(2024 + month // 12, month % 12 + 1, 1)
        friday = first + timedelta(days=(4 - first.weekday()) % 7 + 7)
        starts = datetime(friday.year, friday.month, friday.day, 18, tzinfo=BERLIN)
        blocks.append(_campaign(
            f"shoe-weekend-{friday:%Y-%m}", starts, starts + timedelta(hours=54),
            multiplier="2", categories=["shoes"], channels=["app", "web"], max_per_customer=1,
        ))  # fmt: skip
    for quarter in range(8):
        first = date(2024 + quarter // 4, quarter % 4 * 3 + 2, 1)
        monday = first + timedelta(days=-first.weekday() % 7)
        starts = datetime(monday.year, monday.month, monday.day, tzinfo=BERLIN)
        blocks.append(_campaign(
            f"bonus-week-{monday:%Y-%m}", starts, starts + timedelta(days=7), bonus=50,
            min_total="40", tiers=["silver", "gold"], max_per_customer=2,
        ))  # fmt: skip
    for year in (2024, 2025):
        november = date(year, 11, 1)
        thursday = november + timedelta(days=(3 - november.weekday()) % 7 + 21)
        monday = thursday - timedelta(days=3)
        starts = datetime(monday.year, monday.month, monday.day, tzinfo=BERLIN)
        blocks.append(_campaign(
            f"black-friday-{year}", starts, starts + timedelta(days=7), multiplier="1.5",
            min_total="20",
        ))  # fmt: skip
    return "\n" + "\n".join(blocks)


PROGRAM_V2 = PROGRAM + PROGRAM_V2_SECTIONS + _campaigns()
ADJUSTMENT_REASONS = (
    "goodwill: parcel arrived late", "goodwill: item out of stock", "goodwill: birthday missed",
    "correction: purchase not scanned", "correction: duplicate scan", "correction: fraud review",
)  # fmt: skip

# category -> (sku prefix, lowest and highest unit price in cents)
CATALOGUE: dict[str, tuple[str, int, int]] = {
    "shoes": ("SHO", 3999, 14999),
    "apparel": ("APP", 999, 8999),
    "accessories": ("ACC", 499, 4999),
    "beauty": ("BEA", 399, 5999),
    "home": ("HOM", 799, 19999),
}
REWARDS = (("free-shipping", 4), ("voucher-5", 5), ("voucher-10", 3), ("voucher-25", 1))


# ====================================================================== the stream


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _instant(at: datetime, rng: random.Random) -> str:
    """Mostly Berlin local time with its offset, sometimes UTC with Z."""
    if rng.random() < 0.15:
        return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return at.astimezone(BERLIN).isoformat(timespec="seconds")


@dataclass(slots=True)
class _Customer:
    id: str
    joined: datetime
    weight: float  # how much this customer buys
    signs_up: bool
    orders: list[tuple[str, int, datetime]] = field(default_factory=list)  # id, cents, at
    redemptions: list[str] = field(default_factory=list)


class StreamMaker:
    """Builds the stream as (arrival instant, serial, JSON object), then lines in arrival order."""

    def __init__(self, events: int, customers: int, seed: int, *, v2: bool = False) -> None:
        self.rng = random.Random(seed)
        self.v2 = v2
        self.target = events
        self.n_customers = customers
        # (arrival, serial, line): serialized at once, since a million customers' worth of
        # dicts would take gigabytes; nothing changes an event after it is emitted
        self.out: list[tuple[datetime, int, str]] = []
        self.serial = 0

    def _emit(self, at: datetime, body: dict[str, object], late_share: float = 0.02) -> None:
        rng = self.rng
        self.serial += 1
        arrival = at
        if late_share and rng.random() < late_share:  # an offline till syncing later
            arrival = at + timedelta(minutes=rng.uniform(10, 3 * 24 * 60))
        obj: dict[str, object] = {
            "event_id": f"ev-{self.serial:07d}-{rng.getrandbits(24):06x}",
            "occurred_at": _instant(at, rng),
            **body,
        }
        self.out.append((arrival, self.serial, json.dumps(obj, separators=(",", ":"))))

    def _when(self, after: datetime) -> datetime:
        end = START + SPAN
        return after + (end - after) * self.rng.random()

    def make(self) -> list[str]:
        rng = self.rng
        people = self._customers()
        ambassadors = rng.sample(people, max(1, len(people) // 40))
        for person in people:
            self._join(person, ambassadors)
        budget = self.target - len(self.out)
        malformed = round(self.target * 0.001)
        duplicates = round(self.target * 0.005)
        ticks = SPAN.days // 7
        rest = budget - malformed - duplicates - ticks
        # Version 2's events take their share from the purchases: streams of one length.
        v2_shares = (0.004, 0.006, 0.003) if self.v2 else (0, 0, 0)
        n_purchases = round(rest * (0.82 - sum(v2_shares)) / 1.05)
        self._purchases(people, n_purchases)
        self._returns(people)
        self._redemptions(people, round(rest * 0.045))
        self._actions(people, round(rest * 0.075))
        self._referrals(people, round(rest * 0.008))
        if self.v2:
            memberships, transfers, adjustments = (round(rest * share) for share in v2_shares)
            self._memberships(people, memberships)
            self._transfers(people, transfers)
            self._adjustments(people, adjustments)
        self._ticks()
        while len(self.out) < self.target - malformed - duplicates:  # rounding: top up
            self._purchases(people, self.target - malformed - duplicates - len(self.out))
        self.out.sort(key=lambda t: (t[0], t[1]))
        lines = [line for _, _, line in self.out]
        self.out.clear()
        self._duplicate(lines, duplicates)
        self._malform(lines, malformed)
        return lines

    def _customers(self) -> list[_Customer]:
        rng = self.rng
        people = []
        for i in range(1, self.n_customers + 1):
            joined = START + SPAN * 0.95 * rng.random() ** 1.4  # more joined early
            people.append(_Customer(f"cust-{i:06d}", joined, rng.lognormvariate(0, 1.0),
                                    rng.random() < 0.9))  # fmt: skip
        return people

    def _join(self, person: _Customer, ambassadors: list[_Customer]) -> None:
        rng = self.rng
        referrer = rng.choice(ambassadors)
        referred = referrer is not person and referrer.joined < person.joined
        if not person.signs_up:  # buys first; some came through a shared link
            if referred and rng.random() < 0.3:
                self._emit(person.joined - timedelta(minutes=2), {
                    "type": "referral", "customer_id": person.id, "referrer_id": referrer.id,
                    "channel": "web",
                })  # fmt: skip
            return
        body: dict[str, object] = {
            "type": "signup", "customer_id": person.id, "email": f"{person.id}@example.org",
            "channel": rng.choice(("pos", "web", "web", "app")),
        }  # fmt: skip
        if rng.random() < 0.6:
            body["name"] = f"Customer {person.id[5:]}"
        if rng.random() < 0.3:
            body["phone"] = f"+49 30 {rng.randrange(1000000, 9999999)}"
        if rng.random() < 0.55:
            if rng.random() < 0.01:
                birth = date(rng.choice((1972, 1980, 1988, 1996, 2000)), 2, 29)
            else:
                birth = date(rng.randrange(1950, 2006), 1, 1) + timedelta(days=rng.randrange(365))
            body["birth_date"] = birth.isoformat()
        if referred and rng.random() < 0.15:
            body["referred_by"] = referrer.id
        if rng.random() < 0.4:
            body["newsletter"] = True
        self._emit(person.joined, body, late_share=0)
        if rng.random() < 0.005:  # signs up again, in the app
            self._emit(self._when(person.joined), {**body, "channel": "app"}, late_share=0)

    def _purchases(self, people: list[_Customer], count: int) -> None:
        rng = self.rng
        end = START + SPAN
        weights = [p.weight * (end - p.joined).days for p in people]
        for person in rng.choices(people, weights, k=count):
            at = self._when(person.joined + timedelta(minutes=5))
            order_id = f"ord-{self.serial + 1:07d}"
            body: dict[str, object] = {"type": "purchase", "customer_id": person.id,
                                       "order_id": order_id, "currency": "EUR"}  # fmt: skip
            kind = rng.random()
            if kind < 0.15:  # a coffee at the counter
                quantity = rng.choice((1, 1, 1, 2))
                cents = 320 * quantity
                body["channel"] = "pos"
                body["items"] = [{"sku": "COF-001", "category": "coffee",
                                  "quantity": quantity, "unit_price": "3.20"}]  # fmt: skip
            elif kind < 0.65:
                items = []
                cents = 0
                for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
                    category = rng.choice(list(CATALOGUE))
                    prefix, low, high = CATALOGUE[category]
                    price, quantity = rng.randrange(low, high), rng.choice((1, 1, 1, 2, 3))
                    cents += price * quantity
                    items.append({"sku": f"{prefix}-{rng.randrange(1000):03d}",
                                  "category": category, "quantity": quantity,
                                  "unit_price": _money(price)})  # fmt: skip
                body["items"] = items
                body["channel"] = rng.choice(("pos", "web", "web", "app"))
            else:
                cents = 0 if rng.random() < 0.002 else int(rng.lognormvariate(8.3, 0.8))
                if rng.random() > 0.1:  # else: channel left to its default
                    body["channel"] = rng.choice(("pos", "pos", "web", "app"))
            body["total"] = _money(cents)
            roll = rng.random()
            if roll < 0.0005:
                body["currency"] = "USD"
            elif roll < 0.001 and person.orders:
                body["order_id"] = person.orders[-1][0]
            else:
                person.orders.append((order_id, cents, at))
            self._emit(at, body)

    def _returns(self, people: list[_Customer]) -> None:
        rng = self.rng
        end = START + SPAN
        for person in people:
            for order_id, cents, at in person.orders:
                if cents == 0 or rng.random() >= 0.05:
                    continue
                when = at + timedelta(hours=rng.uniform(1, 30 * 24))
                if when >= end:
                    continue
                amount = cents if rng.random() < 0.65 else rng.randrange(1, cents + 1)
                body = {"type": "return", "customer_id": person.id, "order_id": order_id,
                        "amount": _money(amount)}  # fmt: skip
                self._emit(when, body)
                if rng.random() < 0.03:  # the till sends it again, with a new id
                    self._emit(when + timedelta(hours=2), dict(body))
        for person in rng.sample(people, 20):
            self._emit(self._when(person.joined), {"type": "return", "customer_id": person.id,
                       "order_id": "ord-unknown", "amount": "10.00"})  # fmt: skip

    def _redemptions(self, people: list[_Customer], count: int) -> None:
        rng = self.rng
        buyers = [p for p in people if p.orders]
        weights = [len(p.orders) for p in buyers]
        names, shares = zip(*REWARDS, strict=True)
        for person in rng.choices(buyers, weights, k=count):
            at = self._when(person.orders[0][2])
            if person.redemptions and rng.random() < 0.03:
                redemption_id = rng.choice(person.redemptions)  # a retry
            else:
                redemption_id = f"rd-{self.serial + 1:07d}"
                person.redemptions.append(redemption_id)
            body: dict[str, object] = {"type": "redemption", "customer_id": person.id,
                                       "redemption_id": redemption_id,
                                       "channel": rng.choice(("pos", "web", "app"))}  # fmt: skip
            roll = rng.random()
            if roll < 0.7:
                body["reward_id"] = rng.choices(names, shares)[0]
            elif roll < 0.95:
                body["points"] = 50 * rng.randrange(2, 41)
            elif roll < 0.98:
                body["points"] = rng.choice((10, 50, 99))
            else:
                body["reward_id"] = "spa-day"
            self._emit(at, body)

    def _actions(self, people: list[_Customer], count: int) -> None:
        rng = self.rng
        names = ("review_written", "app_installed", "survey_completed",
                 "newsletter_subscribed", "poll_answered")  # fmt: skip
        for person in rng.choices(people, k=count):
            action = rng.choices(names, (60, 15, 20, 4, 1))[0]
            channel = "app" if action == "app_installed" else rng.choice(("web", "app"))
            self._emit(self._when(person.joined + timedelta(hours=1)), {
                "type": "action", "customer_id": person.id, "action": action, "channel": channel,
            })  # fmt: skip

    def _referrals(self, people: list[_Customer], count: int) -> None:
        rng = self.rng
        for _ in range(count):
            referee, referrer = rng.sample(people, 2)
            if rng.random() < 0.05:
                referrer = referee
            self._emit(self._when(referee.joined), {
                "type": "referral", "customer_id": referee.id, "referrer_id": referrer.id,
            })  # fmt: skip

    def _memberships(self, people: list[_Customer], count: int) -> None:
        """Plans bought by regular buyers: most the year (the reduced fee guessed from the
        orders, so some pay the wrong one), some the month, renewed a few times."""
        rng = self.rng
        buyers = [p for p in people if len(p.orders) >= 2]
        # summed once: `choices(buyers, weights)` would sum them on every call
        cum_weights = list(itertools.accumulate(len(p.orders) for p in buyers))
        done = 0
        while done < count:
            person = rng.choices(buyers, cum_weights=cum_weights)[0]
            at = self._when(person.orders[1][2])
            roll = rng.random()
            if roll < 0.7:
                paid = "29.00" if len(person.orders) >= 12 else "49.00"
                bodies = [("plus", "39.00" if rng.random() < 0.03 else paid)]
            elif roll < 0.99:
                bodies = [("plus-monthly", "4.90")] * rng.randrange(1, 5)
            else:
                bodies = [("vip", "99.00")]  # a plan the program does not have
            for plan, paid in bodies[: count - done]:
                self._emit(at, {"type": "membership", "customer_id": person.id, "plan": plan,
                                "paid": paid, "channel": rng.choice(("web", "app"))})  # fmt: skip
                at += timedelta(days=rng.uniform(27, 31))
                done += 1

    def _transfers(self, people: list[_Customer], count: int) -> None:
        """Points given to family: mostly to other customers, some to people not yet
        enrolled (the transfer enrolls them), a few refused."""
        rng = self.rng
        buyers = [p for p in people if p.orders]
        weights = [len(p.orders) for p in buyers]
        for giver in rng.choices(buyers, weights, k=count):
            at = self._when(giver.orders[0][2] + timedelta(days=15))
            roll = rng.random()
            if roll < 0.75:
                to = rng.choice(people).id
            elif roll < 0.98:
                to = f"family-{rng.randrange(10**6):06d}"
            else:
                to = giver.id
            points = 50 if rng.random() < 0.03 else 50 * rng.randrange(2, 21)
            self._emit(at, {"type": "transfer", "customer_id": giver.id, "to_customer_id": to,
                            "points": points, "channel": "app"})  # fmt: skip

    def _adjustments(self, people: list[_Customer], count: int) -> None:
        """Support's corrections: most give points back, a quarter take some away."""
        rng = self.rng
        for person in rng.choices(people, k=count):
            at = self._when(person.joined + timedelta(days=1))
            if rng.random() < 0.75:
                points, reason = 10 * rng.randrange(5, 51), rng.choice(ADJUSTMENT_REASONS[:3])
            else:
                points, reason = -10 * rng.randrange(1, 31), rng.choice(ADJUSTMENT_REASONS[3:])
            self._emit(at, {"type": "adjustment", "customer_id": person.id, "points": points,
                            "reason": reason, "channel": "web"})  # fmt: skip

    def _ticks(self) -> None:
        first = datetime(2024, 1, 8, 0, 5, tzinfo=BERLIN)  # Mondays, local time
        for week in range(SPAN.days // 7):
            local = (first.replace(tzinfo=None) + timedelta(weeks=week)).replace(tzinfo=BERLIN)
            at = local.astimezone(UTC)
            self.serial += 1
            obj = {"event_id": f"tick-{local.date().isoformat()}", "type": "tick",
                   "occurred_at": local.isoformat(timespec="seconds")}  # fmt: skip
            self.out.append((at, self.serial, json.dumps(obj, separators=(",", ":"))))

    def _duplicate(self, lines: list[str], count: int) -> None:
        """Resend earlier lines a little later; a fifth of them changed (same id, other body)."""
        rng = self.rng
        picks = rng.sample(range(len(lines) - 1), count * 2)
        picks = [i for i in picks if '"type":"tick"' not in lines[i]][:count]
        for index in sorted(picks, reverse=True):
            text = lines[index]
            if rng.random() < 0.2:
                obj = json.loads(text)
                obj["resent"] = True  # unknown fields are ignored, but the body differs
                text = json.dumps(obj, separators=(",", ":"))
            lines.insert(min(len(lines), index + 1 + rng.randrange(3000)), text)

    def _malform(self, lines: list[str], count: int) -> None:
        rng = self.rng
        for _ in range(count):
            index = rng.randrange(len(lines))
            text = lines[index]
            kind = rng.randrange(5)
            at = "2024-05-01T10:00:00+02:00"
            if kind == 0:
                bad = text[: len(text) // 2]  # cut off
            elif kind == 1:  # money as a JSON number
                bad = json.dumps({"event_id": f"bad-{index}", "type": "purchase", "occurred_at": at,
                                  "customer_id": "cust-000001", "order_id": "o",
                                  "currency": "EUR", "total": 12.5})  # fmt: skip
            elif kind == 2:
                bad = json.dumps({"event_id": f"bad-{index}", "type": "teleport",
                                  "occurred_at": at, "customer_id": "cust-000002"})  # fmt: skip
            elif kind == 3:
                bad = json.dumps({"event_id": f"bad-{index}", "type": "action",
                                  "occurred_at": "yesterday", "customer_id": "cust-000003",
                                  "action": "review_written"})  # fmt: skip
            else:
                bad = "not json at all"
            lines.insert(index, bad)


# ====================================================================== the engine, in-process


@dataclass(slots=True)
class Decided:
    """One input as the pipeline would see it, with its decision (None: not decided)."""

    position: int
    raw: bytes
    event: ev.Event | ev.Invalid
    decision: Decision | None  # None: dead letter or duplicate


class Engine:
    """decode + decide over a stream with in-memory states, as `Pipeline` does, no database."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.states: dict[str, CustomerState] = {}
        self.due: dict[str, datetime | None] = {}
        self.ticks: list[datetime] = []
        self.seen: set[str] = set()
        self.counts = {"accepted": 0, "rejected": 0, "duplicates": 0, "dead_lettered": 0,
                       "entries": 0}  # fmt: skip

    def run(self, lines: list[bytes]) -> Iterator[Decided]:
        for position, raw in enumerate(lines, 1):
            yield self.one(position, raw)

    def one(self, position: int, raw: bytes) -> Decided:
        event = ev.decode(raw)
        if isinstance(event, ev.Invalid):
            self.counts["dead_lettered"] += 1
            return Decided(position, raw, event, None)
        if event.event_id in self.seen:
            self.counts["duplicates"] += 1
            return Decided(position, raw, event, None)
        self.seen.add(event.event_id)
        if isinstance(event, ev.Tick):
            at = event.occurred_at
            due = [
                self.states[c] for c, when in self.due.items() if when is not None and when <= at
            ]
            decision = decide_tick(due, event, self.rules)
            self.ticks.append(at)
            for state in decision.states.values():
                state.ticks_seen = len(self.ticks)
        else:
            for customer_id in self._customers_of(event):
                self._catch_up(customer_id)
            decision = decide(self.states, event, self.rules)
            for customer_id, state in decision.states.items():
                if customer_id not in self.states:
                    state.ticks_seen = len(self.ticks)
        for customer_id, state in decision.states.items():
            self.states[customer_id] = state
            self.due[customer_id] = next_due_at(state, self.rules)
        self.counts["accepted" if decision.reason is None else "rejected"] += 1
        self.counts["entries"] += len(decision.entries)
        return Decided(position, raw, event, decision)

    def _customers_of(self, event: ev.Event) -> list[str]:
        assert not isinstance(event, ev.Tick)
        named = [event.customer_id]
        if isinstance(event, ev.Signup) and event.referred_by:
            named.append(event.referred_by)
        elif isinstance(event, ev.Referral):
            named.append(event.referrer_id)
        elif isinstance(event, ev.Transfer):
            named.append(event.to_customer_id)
        state = self.states.get(event.customer_id)
        if state is not None and state.referrer_id and not state.referral_settled:
            named.append(state.referrer_id)
        return named

    def _catch_up(self, customer_id: str) -> None:
        """Ticks this customer was not due for only move its clock (as Pipeline._catch_up)."""
        state = self.states.get(customer_id)
        if state is None or state.ticks_seen >= len(self.ticks):
            return
        clock = max(self.ticks[state.ticks_seen :])
        state.ticks_seen = len(self.ticks)
        if state.clock is None or clock > state.clock:
            state.clock = clock


# ====================================================================== the database


@dataclass(frozen=True, slots=True)
class Postgres:
    """One server; `url(name)` addresses a database on it."""

    base_url: str  # SQLAlchemy-style, as LOYALTY_DATABASE_URL takes it
    admin: str  # conninfo of a database to run CREATE DATABASE from
    embedded_server: embedded.Server | None

    def url(self, dbname: str) -> str:
        if self.embedded_server is not None:
            return dataclasses.replace(self.embedded_server, dbname=dbname).url
        parts = urlsplit(self.base_url)
        return urlunsplit(parts._replace(path="/" + dbname))

    def fresh(self, dbname: str, *, migrated: bool = True, src: Path | None = None) -> str:
        """Drop and create `dbname`, migrate it to head (unless told not to: an older commit
        knows only its own migrations); returns its URL. With `src`, the head of the package
        in that folder (an older commit's `src/`), in a subprocess importing it from there."""
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        url = self.url(dbname)
        anchor_file(url).unlink(missing_ok=True)  # the dropped database's anchors
        if migrated and src is not None:
            code = "import sys; from loyalty_ledger.generations.migrate import migrate; " \
                "migrate(sys.argv[1])"
            subprocess.run([sys.executable, "-c", code, url], env=tree_env(src), check=True)
        elif migrated:
            migrate(url)
        return url

    def postmaster_pid(self) -> int | None:
        """The server's main process, if it runs on this machine (a backend's parent)."""
        with psycopg.connect(self.admin, autocommit=True) as conn:
            found = conn.execute("SELECT pg_backend_pid()").fetchone()
            stat = _proc_stat(found[0]) if found else None  # before the backend exits
        return stat.ppid if stat is not None and stat.comm == "postgres" else None

    def drop(self, dbname: str) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname)))

    def settings(self) -> dict[str, str]:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            names = ("server_version", "fsync", "synchronous_commit", "full_page_writes",
                     "shared_buffers", "wal_level")  # fmt: skip
            shown = {}
            for name in names:
                found = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
                shown[name] = str(found[0]) if found else "?"
            return shown


@contextlib.contextmanager
def postgres(workdir: Path) -> Iterator[Postgres]:
    url = os.environ.get("LOYALTY_DATABASE_URL")
    if url:
        yield Postgres(url, psycopg_url(url), None)
        return
    server = embedded.start(workdir / ".loyalty", fsync=True)
    try:
        yield Postgres(server.url, server.conninfo("postgres"), server)
    finally:
        embedded.stop(server)


# ====================================================================== the measurements


@dataclass(frozen=True, slots=True)
class Usage:
    """What one command used: its own peak RSS (`PeakRss`) and CPU (user + sys, from
    `wait4`), and the CPU of the PostgreSQL server meanwhile (None: not on this machine)."""

    peak_rss_mb: float
    cpu_s: float
    server_cpu_s: float | None
    server_cpu_by_backend_s: dict[str, float] | None = None  # `BackendCpu`'s, when sampled

    def __str__(self) -> str:
        server = "?" if self.server_cpu_s is None else f"{self.server_cpu_s:.1f} s"
        return f"peak RSS {self.peak_rss_mb:,.0f} MB, CPU {self.cpu_s:.1f} s, server CPU {server}"


@dataclass(slots=True)
class Figure:
    name: str
    events: int  # input lines
    seconds: float
    note: str = ""
    usage: Usage | None = None

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


# Each benchmark database gets the ledger key and an anchor file of its own: anchors of a
# database that `Postgres.fresh` dropped must not meet its successor's (verify reads them),
# nor land in the user's ./.loyalty/anchors.jsonl.
BENCH_LEDGER_KEY = "b3" * 32
_ANCHORS = Path(tempfile.mkdtemp(prefix="loyalty-bench-anchors-"))
atexit.register(shutil.rmtree, _ANCHORS, True)


def anchor_file(url: str) -> Path:
    return _ANCHORS / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}.jsonl"


def database_env(src: Path | None, url: str) -> dict[str, str]:
    """`tree_env(src)` for the database at `url`, with the benchmark's key and its anchors."""
    return {**tree_env(src), "LOYALTY_DATABASE_URL": url, "LOYALTY_LEDGER_KEY": BENCH_LEDGER_KEY,
            "LOYALTY_ANCHOR_FILE": str(anchor_file(url))}  # fmt: skip


def tree_env(src: Path | None) -> dict[str, str]:
    """This process's environment; with `src`, importing the package from that folder (an
    older commit's `src/`: PYTHONPATH comes before the editable install, for `loyalty` too)."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src.resolve())
    return env


def loyalty_command() -> str:
    return shutil.which("loyalty", path=str(Path(sys.executable).parent)) or "loyalty"


@dataclass(frozen=True, slots=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str
    seconds: float  # wall, from before the start to the end
    usage: Usage


class PeakRss(threading.Thread):
    """A process's peak resident set, its own: VmHWM from /proc, read every 50 ms.

    Not `ru_maxrss`: Linux carries the high-water mark of the memory a child had
    before exec (its parent's, copied at the fork) into the child's, so every
    command this script starts would "peak" at least at this script's own size
    (2,230 MB with a 3M-line stream in memory, whatever the command used).
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.path = Path(f"/proc/{pid}/status")
        self.kib = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            try:
                text = self.path.read_text()
            except OSError:  # gone, or not Linux
                return
            for line in text.splitlines():
                if line.startswith("VmHWM:"):  # absent once it is a zombie
                    self.kib = max(self.kib, int(line.split()[1]))


def run_measured(command: list[str], env: dict[str, str], postmaster: int | None,
                 admin: str | None = None) -> Ran:  # fmt: skip
    """Run `command` to its end, reaped with `os.wait4` for its own CPU (RUSAGE_CHILDREN
    would be every child's so far), its peak RSS sampled (`PeakRss`). Output goes to
    files: a full pipe would block the command while nothing reads it. With `admin` (a
    conninfo), the server's CPU is also sampled by backend (`BackendCpu`)."""
    by_backend = BackendCpu(postmaster, admin) if postmaster and admin else None
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        if by_backend is not None:
            by_backend.start()
            by_backend.first.wait(10)
        server_before = server_cpu_s(postmaster)
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=err)  # fmt: skip
        peak = PeakRss(process.pid)
        peak.start()
        _, status, rusage = os.wait4(process.pid, 0)
        peak.done.set()
        peak.join()
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        time.sleep(0.1)  # its backend exits after it: let the postmaster reap it
        server_after = server_cpu_s(postmaster)
        out.seek(0)
        err.seek(0)
        server = None if server_before is None or server_after is None else \
            server_after - server_before
        peak_kib = peak.kib or rusage.ru_maxrss  # ru_maxrss only where /proc has nothing
        usage = Usage(peak_kib / 1024, rusage.ru_utime + rusage.ru_stime, server,
                      by_backend.stop() if by_backend is not None else None)  # fmt: skip
        return Ran(process.returncode, out.read().decode(errors="replace"),
                   err.read().decode(errors="replace"), seconds, usage)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ProcStat:
    comm: str
    ppid: int
    cpu_s: float  # utime + stime + cutime + cstime: its own and its reaped children's


def _proc_stat(pid: int | str) -> ProcStat | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :]
    fields = rest.split()  # fields[0] is the state, field 3 of proc(5)
    ticks = sum(int(f) for f in fields[11:15])
    return ProcStat(comm, int(fields[1]), ticks / os.sysconf("SC_CLK_TCK"))


def server_cpu_s(postmaster: int | None) -> float | None:
    """CPU seconds of the server so far: the postmaster (its cutime/cstime hold the backends
    that have exited) and its live children. Only this server: others may run beside it."""
    if postmaster is None:
        return None
    main = _proc_stat(postmaster)
    if main is None:
        return None
    return main.cpu_s + sum(stat.cpu_s for _, stat in server_children(postmaster))


def server_children(postmaster: int) -> Iterator[tuple[int, ProcStat]]:
    """The postmaster's live children (its backends and workers): pid and stat."""
    for entry in Path("/proc").iterdir():
        stat = _proc_stat(entry.name) if entry.name.isdigit() else None
        if stat is not None and stat.ppid == postmaster:
            yield int(entry.name), stat


class BackendCpu(threading.Thread):
    """The server's CPU while a command runs, by backend: each child of the postmaster read
    from /proc every 0.25 s and named by pg_stat_activity (the command's connections carry
    its name and role, "loyalty ingest writer"; the server's own processes their type).

    A backend that exits between two samples loses its last 0.25 s: the names' sum is a
    little below the postmaster's total, which the tables print."""

    SAMPLER = "bench backend sampler"  # this thread's own connection, left out

    def __init__(self, postmaster: int, admin: str) -> None:
        super().__init__(daemon=True)
        self.postmaster, self.admin = postmaster, admin
        self.first, self.done = threading.Event(), threading.Event()
        self.seen: dict[int, tuple[str, float, float]] = {}  # pid -> name, first CPU, last

    def run(self) -> None:
        with psycopg.connect(self.admin, autocommit=True, application_name=self.SAMPLER) as c:
            while True:
                self._sample(c)
                self.first.set()
                if self.done.wait(0.25):
                    self._sample(c)
                    return

    def _sample(self, conn: psycopg.Connection[Any]) -> None:
        names = {pid: app or kind for pid, app, kind in conn.execute(
            "SELECT pid, application_name, backend_type FROM pg_stat_activity")}  # fmt: skip
        started = self.first.is_set()
        for pid, stat in server_children(self.postmaster):
            was = self.seen.get(pid)
            name = names.get(pid) or (was[0] if was else stat.comm)  # pg_stat_activity's first
            if name == self.SAMPLER:
                continue
            # a backend already running at the start counts from there; a new one from 0
            first = was[1] if was else (stat.cpu_s if not started else 0.0)
            self.seen[pid] = (name, first, stat.cpu_s)

    def stop(self) -> dict[str, float]:
        """CPU seconds by name since the start, most first."""
        self.done.set()
        self.join()
        totals: dict[str, float] = {}
        for name, first, last in self.seen.values():
            totals[name] = totals.get(name, 0.0) + last - first
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def backend_table(usage: Usage | None) -> str:
    """`Usage.server_cpu_by_backend_s` as a table, the postmaster's total beside it."""
    if usage is None or not usage.server_cpu_by_backend_s:
        return ""
    body = [[name, f"{cpu_s:.1f}"] for name, cpu_s in usage.server_cpu_by_backend_s.items()
            if cpu_s >= 0.05]  # fmt: skip
    total = "?" if usage.server_cpu_s is None else f"{usage.server_cpu_s:.1f}"
    body.append(["the server in all (postmaster and children)", total])
    return aligned(["PostgreSQL CPU during `loyalty ingest`, by backend", "CPU s"], body)


def end_to_end(
    pg: Postgres, stream: Path, program: Path, n_lines: int, baseline_src: Path | None = None,
    *, migrated: bool = True,
) -> tuple[Figure, dict[str, Any]]:
    """`loyalty ingest` of the stream into a fresh database; with `baseline_src`, the same
    command importing the package from that folder instead (an older commit's `src/`).
    Unless `migrated`, the command migrates the empty database itself (inside the time)."""
    url = pg.fresh("bench_e2e", migrated=migrated, src=baseline_src)
    env = database_env(baseline_src, url)
    name = "end to end (loyalty ingest)"
    if baseline_src is not None:
        name = f"end to end, {baseline_src}"
    command = [loyalty_command(), "ingest", str(stream), "--program", str(program)]
    result = run_measured(command, env, pg.postmaster_pid(),
                          pg.admin if baseline_src is None else None)  # fmt: skip
    if result.returncode != 0:
        sys.exit(f"loyalty ingest failed ({result.returncode}):\n{result.stderr[-3000:]}")
    figure = Figure(name, n_lines, result.seconds, "CLI startup included", result.usage)
    return figure, last_json(result.stderr, "ingested")


def last_json(text: str, event: str) -> dict[str, Any]:
    """The last structlog line of `event` in `text` ({} if none)."""
    found: dict[str, Any] = {}
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == event:
                found = record
    return found


def against_baseline(
    pg: Postgres, stream: Path, program: Path, n_lines: int, baseline_src: Path, rounds: int
) -> list[Figure]:
    """This tree and the baseline's, interleaved `rounds` times: on a noisy machine only
    figures taken side by side compare."""
    figures = []
    for _ in range(rounds):
        for src in (baseline_src, None):
            # both migrate inside their time: the older commit knows only its own revisions
            figure, logged = end_to_end(pg, stream, program, n_lines, src, migrated=False)
            figure.name += ", migrating"
            print(f"{figure.name}: {figure.seconds:.1f} s, {figure.usage}, counts "
                  + json.dumps({k: logged.get(k) for k in ("accepted", "rejected", "entries")}))
            figures.append(figure)
    return figures


def naive(pg: Postgres, rules: Rules, lines: list[bytes], source: str) -> tuple[Figure, int]:
    """decode + decide, then per event: BEGIN; INSERT per entry; INSERT inbox; COMMIT."""
    url = pg.fresh("bench_naive")
    insert_ledger = sql.SQL("INSERT INTO ledger ({}) VALUES ({})").format(
        sql.SQL(", ").join(map(sql.Identifier, (*COLUMNS, "hash"))),
        sql.SQL(", ").join(sql.Placeholder() * (len(COLUMNS) + 1)),
    )
    insert_inbox = (
        "INSERT INTO inbox (event_id, source, position, event_type, customer_id, occurred_at, "
        "outcome, reason, body_hash, raw) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    )
    insert_dead = "INSERT INTO dead_letters (source, position, raw, reason) VALUES (%s, %s, %s, %s)"
    engine = Engine(rules)
    rows = 0
    prev = GENESIS  # the hash chain, entry by entry, as the real write path keeps it
    with connect(url) as conn:
        started = time.perf_counter()
        for done in engine.run(lines):
            event, decision = done.event, done.decision
            text = done.raw.decode("utf-8", errors="replace")
            if isinstance(event, ev.Invalid):
                conn.execute(insert_dead, (source, done.position, done.raw, event.reason))
                continue
            if decision is None:
                continue  # a duplicate: no effect
            with conn.transaction():
                for entry in decision.entries:
                    prev = keyed_hash(BENCH_KEY, prev, row(entry))
                    conn.execute(insert_ledger, (*row(entry), prev))
                customer_id = None if isinstance(event, ev.Tick) else event.customer_id
                outcome = "accepted" if decision.reason is None else "rejected"
                reason = decision.reason.value if decision.reason else None
                conn.execute(insert_inbox, (
                    event.event_id, source, done.position, event.type, customer_id,
                    event.occurred_at, outcome, reason, hashlib.sha256(done.raw).digest(), text,
                ))  # fmt: skip
            rows += len(decision.entries)
        seconds = time.perf_counter() - started
    note = f"first {len(lines):,} lines; {rows:,} ledger rows; a commit per event"
    return Figure("naive (INSERT per row, commit per event)", len(lines), seconds, note), rows


def copy_rows(pg: Postgres, rows: list[tuple[object, ...]], n_lines: int) -> Figure:
    url = pg.fresh("bench_copy")
    statement = sql.SQL("COPY ledger ({}) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, (*COLUMNS, "hash")))
    )
    hashed = [(*r, h) for r, h in zip(rows, keyed_chain(BENCH_KEY, GENESIS, rows), strict=True)]
    with connect(url) as conn:
        started = time.perf_counter()
        with conn.transaction(), conn.cursor().copy(statement) as copy:
            for values in hashed:
                copy.write_row(values)
        seconds = time.perf_counter() - started
    note = f"{len(rows):,} ledger rows, {len(rows) / seconds:,.0f} rows/s, one transaction"
    return Figure("COPY of the ledger rows alone", n_lines, seconds, note)


def profile(pg: Postgres, stream: Path, program_text: str, top: int) -> None:
    """The CLI's in-process path (ops.ingest.ingest_file -> Pipeline) under cProfile."""
    from loyalty_ledger import log
    from loyalty_ledger.runtime.ingest import ingest_file
    from loyalty_ledger.store.db import connect

    log.configure()  # the `ingested` line as JSON on stderr, as the CLI writes it
    url = pg.fresh("bench_profile")
    conn = connect(url)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    try:
        ingest_file(conn, str(stream), program_text)
    finally:
        profiler.disable()
        conn.close()
    print(f"\nprofile of the in-process ingest ({time.perf_counter() - started:.1f} s "
          "under cProfile)")  # fmt: skip
    stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs()
    for order in ("cumulative", "tottime"):
        print(f"\n--- top {top} by {order}")
        stats.sort_stats(order).print_stats(top)


# ====================================================================== main


def engine_v2(lines: list[str], program: Path) -> Figure:
    """The engine alone on the version 2 stream, with its counts: what version 2 costs
    before any database."""
    engine = Engine(compile_rules(parse_program(program.read_text(encoding="utf-8"))))
    started = time.perf_counter()
    for _ in engine.run([line.encode() for line in lines]):
        pass
    seconds = time.perf_counter() - started
    print(f"engine, version 2: {engine.counts}")
    return Figure("engine alone, version 2 stream", len(lines), seconds,
                  "in memory; not a write path")  # fmt: skip


def write_stream(
    outdir: Path, events: int, customers: int, seed: int, *, v2: bool = False
) -> tuple[Path, Path, list[str]]:
    """The benchmark's program and stream, written to `outdir`: (program, stream, lines);
    with `v2`, the version 2 ones (program-v2.toml, events-v2.jsonl)."""
    suffix = "-v2" if v2 else ""
    program_path = outdir / f"program{suffix}.toml"
    stream_path = outdir / f"events{suffix}.jsonl"
    lines = StreamMaker(events, customers, seed, v2=v2).make()
    program_path.write_text(PROGRAM_V2 if v2 else PROGRAM, encoding="utf-8")
    with stream_path.open("w", encoding="utf-8") as out:  # not one string: 3M lines are 1 GB
        out.writelines(f"{line}\n" for line in lines)
    return program_path, stream_path, lines




def versions(
    pg: Postgres, v1: tuple[Path, Path], v2: tuple[Path, Path], n_lines: int, rounds: int
) -> tuple[list[Figure], list[Figure]]:
    """`loyalty ingest` of the version 1 and the version 2 program and stream, interleaved
    `rounds` times: on a noisy machine only figures taken side by side compare."""
    figures: tuple[list[Figure], list[Figure]] = ([], [])
    for round_ in range(1, rounds + 1):
        for version, (program, stream) in enumerate((v1, v2)):
            figure, logged = end_to_end(pg, stream, program, n_lines)
            figure.name = f"end to end, version {version + 1}, round {round_}"
            counts = {k: logged.get(k) for k in ("accepted", "rejected", "entries")}
            print(f"{figure.name}: {figure.seconds:.1f} s, {figure.usage}, "
                  f"counts {json.dumps(counts)}")  # fmt: skip
            figures[version].append(figure)
    return figures


def versions_table(v1: list[Figure], v2: list[Figure]) -> str:
    """Version 1 and 2 side by side, per round and at the best of each; v2/v1 is the ratio of
    the times (above 1: version 2 is slower)."""
    head = ("end to end", "version 1 s", "version 2 s", "v1 events/s", "v2 events/s", "v2/v1")
    pairs = [(f"round {i}", a, b) for i, (a, b) in enumerate(zip(v1, v2, strict=True), 1)]
    pairs.append(("best", min(v1, key=_seconds), min(v2, key=_seconds)))
    body = [(name, f"{a.seconds:.2f}", f"{b.seconds:.2f}", f"{a.rate:,.0f}", f"{b.rate:,.0f}",
             f"{b.seconds / a.seconds:.3f}") for name, a, b in pairs]  # fmt: skip
    return aligned(head, body)


def _own_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _seconds(figure: Figure) -> float:
    return figure.seconds


def table(figures: list[Figure], baseline: Figure) -> str:
    """One row per figure; the commands' peak RSS and CPU (theirs, and the server's) beside
    the rows measured as a subprocess."""
    head: tuple[str, ...] = ("measurement", "events", "seconds", "events/s", "vs e2e")
    body: list[tuple[str, ...]] = [(f.name, f"{f.events:,}", f"{f.seconds:.2f}",
                                    f"{f.rate:,.0f}", f"{f.rate / baseline.rate:.2f}x")
                                   for f in figures]  # fmt: skip
    if any(f.usage for f in figures):
        head += ("peak RSS MB", "CPU s", "server CPU s", f"floor s ({CPUS} cores)")
        body = [(*r, *_usage_cells(f.usage)) for r, f in zip(body, figures, strict=True)]
    return aligned(head, body)


def _usage_cells(usage: Usage | None) -> tuple[str, str, str, str]:
    if usage is None:
        return "", "", "", ""
    server = "?" if usage.server_cpu_s is None else f"{usage.server_cpu_s:.1f}"
    floor = cpu_floor_s(usage)
    return (f"{usage.peak_rss_mb:,.0f}", f"{usage.cpu_s:.1f}", server,
            "?" if floor is None else f"{floor:.1f}")  # fmt: skip


CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_floor_s(usage: Usage) -> float | None:
    """The fewest wall seconds the CPU a command and the server spent could take on this
    machine's cores, perfectly overlapped: no speed-up of the same work goes below it, and
    an aim below it needs less work, not more overlap (None: the server's CPU is unknown)."""
    if usage.server_cpu_s is None:
        return None
    return (usage.cpu_s + usage.server_cpu_s) / CPUS


def floor_note(figure: Figure) -> str:
    """What `cpu_floor_s` allows `figure`'s command at most, in events/s."""
    floor = None if figure.usage is None else cpu_floor_s(figure.usage)
    if not floor:
        return ""
    return (f"{figure.name}: its CPU and the server's ({floor * CPUS:.1f} s) take at least "
            f"{floor:.1f} s on {CPUS} cores, so at most {figure.events / floor:,.0f} events/s "
            f"for this work; it ran at {figure.rate:,.0f}")  # fmt: skip


def aligned(head: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    out = []
    for i, r in enumerate([head, *body]):
        out.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w)
                             for j, (c, w) in enumerate(zip(r, widths, strict=True))))  # fmt: skip
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=200_000, help="input lines (200000)")
    parser.add_argument("--customers", type=int, default=20_000, help="customers (20000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--naive-events", type=int, default=20_000,
                        help="lines the naive baseline writes (20000)")  # fmt: skip
    parser.add_argument("--keep", type=Path, help="write program and stream here and keep them")
    parser.add_argument("--baseline-src", type=Path, metavar="DIR",
                        help="also time end to end importing the package from DIR (an older "
                        "commit's src/, e.g. from `git worktree add`), interleaved")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleaved rounds with --baseline-src or --v2 (2)")  # fmt: skip
    parser.add_argument("--v2", action="store_true",
                        help="also time a version 2 program and stream beside version 1, "
                        "interleaved")  # fmt: skip
    parser.add_argument(
        "--profile",
        type=int,
        metavar="N",
        default=0,
        help="also profile the in-process ingest; print top N functions",
    )
    parser.add_argument("--generate-only", action="store_true",
                        help="write program and stream, print time and peak RSS, stop")  # fmt: skip
    args = parser.parse_args()
    wall = time.perf_counter()

    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="loyalty-bench-")))
        outdir = args.keep or workdir
        outdir.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        program_path, stream_path, lines = write_stream(
            outdir, args.events, args.customers, args.seed
        )
        print(
            f"generated {len(lines):,} lines ({stream_path.stat().st_size / 1e6:.1f} MB) "
            f"for {args.customers:,} customers in {time.perf_counter() - t:.1f} s: {outdir}"
        )
        if args.generate_only:
            print(f"peak RSS of this script: {_own_peak_rss_mb():,.0f} MB")
            return 0
        raw_lines = [line.encode() for line in lines]
        rules = compile_rules(parse_program(PROGRAM))
        if args.v2:
            v2_paths = write_stream(outdir, args.events, args.customers, args.seed, v2=True)
            print(f"version 2: {len(v2_paths[2]):,} lines, {PROGRAM_V2.count('[[campaigns]]')} "
                  f"campaigns: {v2_paths[1]}")  # fmt: skip

        pg = stack.enter_context(postgres(workdir))
        settings = pg.settings()
        kind = "embedded" if pg.embedded_server else f"LOYALTY_DATABASE_URL {redact(pg.base_url)}"
        print(
            f"postgres {settings['server_version']} ({kind}), fsync={settings['fsync']}, "
            f"synchronous_commit={settings['synchronous_commit']}"
        )

        e2e, logged = end_to_end(pg, stream_path, program_path, len(lines))
        print(
            f"end to end: {e2e.seconds:.1f} s, {e2e.usage}; the CLI logged: "
            + json.dumps({k: v for k, v in logged.items() if k not in ("level", "timestamp")})
        )

        t = time.perf_counter()
        engine = Engine(rules)
        rows = [row(e) for d in engine.run(raw_lines) if d.decision for e in d.decision.entries]
        engine_figure = Figure(
            "engine alone (decode + decide, no DB)",
            len(lines),
            time.perf_counter() - t,
            "in memory; not a write path",
        )
        agree = all(engine.counts[k] == logged.get(k) for k in engine.counts)
        print(f"engine: {engine.counts} -> {'same' if agree else 'DIFFERENT'} counts as the CLI")

        n = min(args.naive_events, len(lines))
        naive_figure, _ = naive(pg, rules, raw_lines[:n], f"file:{stream_path.resolve()}")
        copy_figure = copy_rows(pg, rows, len(lines))

        figures = [e2e, naive_figure, copy_figure, engine_figure]
        if args.baseline_src:
            figures += against_baseline(pg, stream_path, program_path, len(lines),
                                        args.baseline_src, args.rounds)  # fmt: skip
        by_version: tuple[list[Figure], list[Figure]] = ([], [])
        if args.v2:
            figures.append(engine_v2(v2_paths[2], v2_paths[0]))
            by_version = versions(pg, (program_path, stream_path), v2_paths[:2], len(lines),
                                  args.rounds)  # fmt: skip
        print()
        print(table(figures, e2e))
        if args.v2:
            print()
            print(versions_table(*by_version))
        print()
        for f in figures:
            if f.note:
                print(f"  {f.name}: {f.note}")
        if note := floor_note(e2e):
            print(f"  {note}")
        if logged:
            print(
                f"  the CLI's own figure (ingest loop, no startup): {logged.get('seconds')} s, "
                f"{logged.get('events_per_s'):,} events/s"
            )
        if by_backend := backend_table(e2e.usage):
            print()
            print(by_backend)
        print(
            f"\nmachine: {CPUS} cpus (nproc), {platform.machine()}, {platform.system()} "
            f"{platform.release()}, python {platform.python_version()}"
        )
        print(
            f"postgres: {settings['server_version']}, fsync={settings['fsync']}, "
            f"synchronous_commit={settings['synchronous_commit']}, "
            f"full_page_writes={settings['full_page_writes']}, "
            f"shared_buffers={settings['shared_buffers']}, {kind}"
        )

        if args.profile:
            profile(pg, stream_path, PROGRAM, args.profile)
        if pg.embedded_server is None:
            for name in ("bench_e2e", "bench_naive", "bench_copy", "bench_profile"):
                pg.drop(name)
    print(f"\nwhole script: {time.perf_counter() - wall:.1f} s, "
          f"its own peak RSS {_own_peak_rss_mb():,.0f} MB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
