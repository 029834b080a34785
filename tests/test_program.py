"""The program file: valid programs load, bad ones are refused with one line naming the key."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from loyalty_ledger.program import (
    Program,
    ProgramError,
    TierLevel,
    load_program,
    parse_program,
    program_hash,
)
from support import EXAMPLES, example_program_v1

# PROGRAM.md's example program, verbatim.
EXAMPLE = """\
[program]
name = "Diamond Club"
currency = "EUR"                 # ISO 4217; other currencies are rejected
timezone = "Europe/Berlin"

[earn]
points_per_unit = "1"            # points per 1.00 of spend
category_multipliers = { shoes = "2" }   # default "1" for any other category
channel_multipliers = { app = "1.5" }    # channels: pos, web, app; default "1"

[expiry]
months = 24                      # 0 or absent: points never expire

[tiers]
window_days = 365                # rolling qualification window
[[tiers.levels]]
name = "bronze"
min_spend = "0"                  # the first level must start at 0
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
referee_bonus = 0
min_first_purchase = "20"
[[referral.ladder]]              # rewards at this many qualified referrals
count = 5
reward = "shaving-cream"
[[referral.ladder]]
count = 10
reward = "razor"

[[actions]]                      # engagement actions that earn points
name = "newsletter_subscribed"
points = 50
max_per_customer = 1             # absent: unlimited
[[actions]]
name = "review_written"
points = 20
max_per_customer = 10

[[stamp_cards]]                  # "every 10th coffee is free"
id = "coffee-card"
every = 10
min_total = "3.00"
categories = ["coffee"]          # empty or absent: any purchase counts
reward = "free-coffee"

[[rewards]]                      # the redemption catalogue
id = "voucher-5"
cost = 500

[redemption]
min_points = 100
"""

MINIMAL = """\
[program]
name = "Corner Shop"
currency = "GBP"
timezone = "Europe/London"

[earn]
points_per_unit = 1
"""


def _conformance_programs() -> list[Path]:
    root = Path(__file__).resolve().parents[1]
    for cases in (root / "tests" / "conformance", root.parent / "shared" / "conformance"):
        found = sorted(cases.glob("case-*/program.toml"))
        if found:
            return found
    return []


CONFORMANCE = _conformance_programs()


def edit(old: str, new: str, text: str = EXAMPLE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def refused(text: str) -> str:
    with pytest.raises(ProgramError) as caught:
        parse_program(text, "program.toml")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("program.toml: ")
    return message


# --- valid programs -------------------------------------------------------------------------


def test_the_example_program_loads() -> None:
    program = parse_program(EXAMPLE)
    assert program.program.currency == "EUR"
    assert program.earn.points_per_unit == Decimal(1)
    assert program.earn.category_multipliers == {"shoes": Decimal(2)}
    assert program.earn.channel_multipliers == {"app": Decimal("1.5")}
    assert program.expiry is not None and program.expiry.months == 24
    assert program.tiers is not None
    assert program.tiers.levels[1] == TierLevel(
        name="silver", min_spend=Decimal(500), multiplier=Decimal("1.25")
    )
    assert program.referral is not None
    assert [step.count for step in program.referral.ladder] == [5, 10]
    assert program.actions[0].max_per_customer == 1
    assert program.stamp_cards[0].categories == ("coffee",)
    assert program.rewards[0].cost == 500
    assert program.redemption is not None and program.redemption.min_points == 100


def test_absent_sections_are_none_and_defaults_apply() -> None:
    program = parse_program(MINIMAL)
    assert program.earn.points_per_unit == Decimal(1)
    assert (program.expiry, program.tiers, program.signup, program.birthday) == (None,) * 4
    assert (program.referral, program.redemption) == (None, None)
    assert (program.actions, program.stamp_cards, program.rewards) == ((), (), ())
    tiers = parse_program(
        MINIMAL + '[[tiers.levels]]\nname = "all"\nmin_spend = 0\nmultiplier = "1"\n'
    )
    assert tiers.tiers is not None and tiers.tiers.window_days == 365
    action = parse_program(MINIMAL + '[[actions]]\nname = "a"\npoints = 5\n').actions[0]
    assert action.max_per_customer is None


def test_programs_are_frozen() -> None:
    program = parse_program(MINIMAL)
    with pytest.raises(ValueError, match="frozen"):
        program.program = program.program  # type: ignore[misc]


@pytest.mark.skipif(not CONFORMANCE, reason="conformance cases not found")
@pytest.mark.parametrize("path", CONFORMANCE, ids=[path.parent.name for path in CONFORMANCE])
def test_conformance_programs_load(path: Path) -> None:
    assert isinstance(load_program(path), Program)


@pytest.mark.parametrize("amount", ['"0.01"', "3", '"007"', '"-0"'])
def test_amounts_as_strings_or_integers(amount: str) -> None:
    program = parse_program(edit('points_per_unit = "1"', f"points_per_unit = {amount}"))
    assert program.earn.points_per_unit == Decimal(amount.strip('"'))


# --- bad programs: one row per rule ---------------------------------------------------------

BAD: list[tuple[str, str, str]] = [
    # (case, program text, expected message after "program.toml: ")
    (
        "unknown key",
        edit("[earn]\n", "[earn]\nbonus = 3\n"),
        "[earn].bonus: unknown key; remove it (known: points_per_unit, category_multipliers, "
        "channel_multipliers)",
    ),
    (
        "unknown section",
        EXAMPLE + "\n[bogus]\nx = 1\n",
        "[bogus]: unknown key; remove it (known: program, earn, expiry, tiers, signup, birthday, "
        "referral, redemption, actions, stamp_cards, rewards, pending, campaigns, memberships, "
        "transfers)",
    ),
    (
        "unknown key in an array of tables",
        edit('name = "silver"\n', 'name = "silver"\nbonus = 1\n'),
        "[tiers.levels][2].bonus: unknown key; remove it (known: name, min_spend, multiplier)",
    ),
    (
        "unknown channel",
        edit('{ app = "1.5" }', '{ shop = "1.5" }'),
        "[earn].channel_multipliers.shop: unknown key; use one of 'pos', 'web' or 'app'",
    ),
    (
        "first tier not at 0",
        edit('min_spend = "0"', 'min_spend = "10"'),
        "[tiers.levels][1].min_spend: must be 0 for the first level (got 10); "
        "start the levels at 0",
    ),
    (
        "thresholds not increasing",
        edit('min_spend = "2000"', 'min_spend = "500"'),
        "[tiers.levels][3].min_spend: must be greater than the previous level's (500); "
        "make the levels increase",
    ),
    (
        "thresholds decreasing",
        edit('min_spend = "2000"', 'min_spend = "499.99"'),
        "[tiers.levels][3].min_spend: must be greater than the previous level's (500)",
    ),
    (
        "no tier levels",
        edit("[[tiers.levels]]", "[[tiers.levelz]]").replace(
            "[[tiers.levels]]", "[[tiers.levelz]]"
        ),
        "[tiers].levels: missing; add at least one [[tiers.levels]]",
    ),
    (
        "window of 0 days",
        edit("window_days = 365", "window_days = 0"),
        "[tiers].window_days: must be 1 or more",
    ),
    (
        "negative amount",
        edit('points_per_unit = "1"', 'points_per_unit = "-1"'),
        "[earn].points_per_unit: must not be negative; use 0 or more",
    ),
    (
        "negative integer amount",
        edit('min_first_purchase = "20"', "min_first_purchase = -20"),
        "[referral].min_first_purchase: must not be negative",
    ),
    (
        "negative multiplier",
        edit('multiplier = "1.25"', 'multiplier = "-1.25"'),
        "[tiers.levels][2].multiplier: must not be negative",
    ),
    (
        "negative category multiplier",
        edit('shoes = "2"', 'shoes = "-2"'),
        "[earn].category_multipliers.shoes: must not be negative",
    ),
    ("negative bonus", edit("bonus = 100", "bonus = -100"), "[signup].bonus: must be 0 or more"),
    (
        "negative points",
        edit("points = 50", "points = -50"),
        "[actions][1].points: must be 0 or more",
    ),
    ("negative expiry", edit("months = 24", "months = -1"), "[expiry].months: must be 0 or more"),
    (
        "zero max_per_customer",
        edit("max_per_customer = 1 ", "max_per_customer = 0 "),
        "[actions][1].max_per_customer: must be 1 or more",
    ),
    ("zero cost", edit("cost = 500", "cost = 0"), "[rewards][1].cost: must be 1 or more"),
    ("zero every", edit("every = 10", "every = 0"), "[stamp_cards][1].every: must be 1 or more"),
    (
        "zero ladder count",
        edit("count = 5", "count = 0"),
        "[referral.ladder][1].count: must be 1 or more",
    ),
    (
        "duplicate tier name",
        edit('name = "gold"', 'name = "bronze"'),
        '[tiers.levels][3].name: duplicate tier name "bronze" (also at [1]); '
        "give each its own name",
    ),
    (
        "duplicate action name",
        edit('name = "review_written"', 'name = "newsletter_subscribed"'),
        '[actions][2].name: duplicate action name "newsletter_subscribed" (also at [1]); '
        "give each its own name",
    ),
    (
        "duplicate stamp card id",
        EXAMPLE + '[[stamp_cards]]\nid = "coffee-card"\nevery = 5\nreward = "x"\n',
        '[stamp_cards][2].id: duplicate stamp card id "coffee-card" (also at [1]); '
        "give each its own id",
    ),
    (
        "duplicate reward id",
        EXAMPLE + '[[rewards]]\nid = "voucher-5"\ncost = 50\n',
        '[rewards][2].id: duplicate reward id "voucher-5" (also at [1]); give each its own id',
    ),
    (
        "duplicate ladder count",
        edit("count = 10", "count = 5"),
        "[referral.ladder][2].count: duplicate ladder count 5 (also at [1]); "
        "give each its own count",
    ),
    (
        "unknown currency",
        edit('"EUR"', '"EURO"'),
        '[program].currency: unknown currency "EURO"; use an active ISO 4217 code like "EUR"',
    ),
    (
        "lowercase currency",
        edit('"EUR"', '"eur"'),
        '[program].currency: unknown currency "eur" (did you mean "EUR"?)',
    ),
    ("withdrawn currency", edit('"EUR"', '"HRK"'), '[program].currency: unknown currency "HRK"'),
    (
        "unknown time zone",
        edit('"Europe/Berlin"', '"Europe/Berlinn"'),
        '[program].timezone: unknown time zone "Europe/Berlinn"; '
        'use an IANA name like "Europe/Berlin"',
    ),
    (
        "time zone folder",
        edit('"Europe/Berlin"', '"Europe"'),
        '[program].timezone: unknown time zone "Europe"',
    ),
    (
        "time zone path",
        edit('"Europe/Berlin"', '"../../etc/passwd"'),
        "[program].timezone: unknown time zone",
    ),
    (
        "machine time zone",
        edit('"Europe/Berlin"', '"localtime"'),
        "[program].timezone: unknown time zone",
    ),
    (
        "float money",
        edit('points_per_unit = "1"', "points_per_unit = 1.5"),
        '[earn].points_per_unit: is a float; write it as a string, like "1.5" (floats are inexact)',
    ),
    (
        "tiny float money",
        edit('min_spend = "500"', "min_spend = 1e-7"),
        '[tiers.levels][2].min_spend: is a float; write it as a string, like "0.0000001"',
    ),
    (
        "exponent string",
        edit('points_per_unit = "1"', 'points_per_unit = "1e2"'),
        '[earn].points_per_unit: must be a plain decimal like "1.25" '
        '(no exponent, "+" sign or spaces)',
    ),
    (
        "plus sign",
        edit('min_total = "3.00"', 'min_total = "+3"'),
        "[stamp_cards][1].min_total: must be a plain decimal",
    ),
    (
        "word for money",
        edit('multiplier = "1.5"', 'multiplier = "one"'),
        "[tiers.levels][3].multiplier: must be a plain decimal",
    ),
    (
        "bool for money",
        edit('points_per_unit = "1"', "points_per_unit = true"),
        '[earn].points_per_unit: must be a decimal string like "1.25" or an integer',
    ),
    (
        "float for an integer",
        edit("bonus = 250", "bonus = 250.0"),
        "[birthday].bonus: must be an integer",
    ),
    (
        "string for an integer",
        edit("cost = 500", 'cost = "500"'),
        "[rewards][1].cost: must be an integer",
    ),
    (
        "bool for an integer",
        edit("min_points = 100", "min_points = true"),
        "[redemption].min_points: must be an integer",
    ),
    (
        "missing section",
        edit("[program]", "[programme]"),
        "[program]: missing; add it (and 1 more)",
    ),
    (
        "missing key",
        edit('points_per_unit = "1"            # points per 1.00 of spend\n', ""),
        "[earn].points_per_unit: missing; add it",
    ),
    (
        "missing key in an array",
        edit('reward = "razor"\n', ""),
        "[referral.ladder][2].reward: missing; add it",
    ),
    (
        "empty name",
        edit('name = "silver"', 'name = ""'),
        "[tiers.levels][2].name: must not be empty",
    ),
    (
        "non-string category",
        edit('categories = ["coffee"]', 'categories = ["coffee", 3]'),
        "[stamp_cards][1].categories[2]: must be a string",
    ),
    (
        "string for an array",
        edit('categories = ["coffee"]', 'categories = "coffee"'),
        "[stamp_cards][1].categories: must be an array",
    ),
    (
        "section as a value",
        "signup = 100\n" + edit("[signup]\nbonus = 100\n", ""),
        "[signup]: must be a table",
    ),
    (
        "table array as a table",
        edit("[[rewards]] ", "[rewards] "),
        "[rewards]: must be an array of tables; write each as [[rewards]]",
    ),
    (
        "bad toml",
        edit("[earn]", "[earn"),
        "not valid toml: expected ']' at the end of a table declaration (at line 6, column 6)",
    ),
    (
        "duplicate toml key",
        edit("bonus = 100", "bonus = 100\nbonus = 200"),
        "not valid toml: cannot overwrite a value (at line 31, column 12)",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [row[1:] for row in BAD], ids=[row[0] for row in BAD]
)
def test_bad_programs_are_refused_naming_the_key(text: str, expected: str) -> None:
    assert refused(text).startswith("program.toml: " + expected)


# --- bounds (PROGRAM.md "Bounds"): each limit, and one past it -------------------------------

BILLION = 1_000_000_000
MONEY_DIGITS = "must have at most 12 digits before the point and 6 after"
LONG = "x" * 1000
ON_THE_BOUNDS: list[tuple[str, str]] = [
    ("signup bonus 10^9", edit("bonus = 100", f"bonus = {BILLION}")),
    ("birthday bonus 0", edit("bonus = 250", "bonus = 0")),
    ("referrer bonus 10^9", edit("referrer_bonus = 500", f"referrer_bonus = {BILLION}")),
    ("referee bonus 10^9", edit("referee_bonus = 0", f"referee_bonus = {BILLION}")),
    ("action points 10^9", edit("points = 50", f"points = {BILLION}")),
    ("max_per_customer 10^9", edit("max_per_customer = 1 ", f"max_per_customer = {BILLION} ")),
    ("cost 10^9", edit("cost = 500", f"cost = {BILLION}")),
    ("every 10^9", edit("every = 10", f"every = {BILLION}")),
    ("ladder count 10^9", edit("count = 10", f"count = {BILLION}")),
    ("min_points 10^9", edit("min_points = 100", f"min_points = {BILLION}")),
    ("points_per_unit 1000", edit('points_per_unit = "1"', 'points_per_unit = "1000"')),
    ("points_per_unit 0.000001", edit('points_per_unit = "1"', 'points_per_unit = "0.000001"')),
    ("points_per_unit 1000 as integer", edit('points_per_unit = "1"', "points_per_unit = 1000")),
    ("category multiplier 1000", edit('shoes = "2"', 'shoes = "1000.000000"')),
    ("channel multiplier 0", edit('app = "1.5"', 'app = "0"')),
    ("tier multiplier 999.999999", edit('multiplier = "1.5"', 'multiplier = "999.999999"')),
    ("min_spend 12 and 6 digits", edit('min_spend = "2000"', 'min_spend = "999999999999.999999"')),
    ("min_total 12 digits integer", edit('min_total = "3.00"', "min_total = 999999999999")),
    ("min_first_purchase 6 decimals", edit('"20"', '"20.000001"')),
    ("expiry 1200 months", edit("months = 24", "months = 1200")),
    ("window 3660 days", edit("window_days = 365", "window_days = 3660")),
    ("name 1000 characters", edit('"Diamond Club"', f'"{LONG}"')),
    ("category key 1000 characters", edit('shoes = "2"', f'{LONG} = "2"')),
    ("reward 1000 characters", edit('reward = "razor"', f'reward = "{LONG}"')),
]


@pytest.mark.parametrize(
    "text", [row[1] for row in ON_THE_BOUNDS], ids=[row[0] for row in ON_THE_BOUNDS]
)
def test_programs_on_the_bounds_load(text: str) -> None:
    assert isinstance(parse_program(text), Program)


BEYOND: list[tuple[str, str, str]] = [
    # (case, program text, expected message after "program.toml: ")
    (
        "signup bonus 10^9 + 1",
        edit("bonus = 100", f"bonus = {BILLION + 1}"),
        "[signup].bonus: must be 1000000000 or less",
    ),
    (
        "signup bonus 2^63 - 1",
        edit("bonus = 100", "bonus = 9223372036854775807"),
        "[signup].bonus: must be 1000000000 or less",
    ),
    (
        "birthday bonus beyond 2^63",
        edit("bonus = 250", f"bonus = {2**64}"),
        "[birthday].bonus: must be 1000000000 or less",
    ),
    (
        "referrer bonus",
        edit("referrer_bonus = 500", f"referrer_bonus = {BILLION + 1}"),
        "[referral].referrer_bonus: must be 1000000000 or less",
    ),
    (
        "referee bonus",
        edit("referee_bonus = 0", f"referee_bonus = {BILLION + 1}"),
        "[referral].referee_bonus: must be 1000000000 or less",
    ),
    (
        "action points",
        edit("points = 50", f"points = {BILLION + 1}"),
        "[actions][1].points: must be 1000000000 or less",
    ),
    (
        "max_per_customer",
        edit("max_per_customer = 1 ", f"max_per_customer = {BILLION + 1} "),
        "[actions][1].max_per_customer: must be 1000000000 or less",
    ),
    (
        "cost",
        edit("cost = 500", f"cost = {BILLION + 1}"),
        "[rewards][1].cost: must be 1000000000 or less",
    ),
    (
        "every",
        edit("every = 10", f"every = {BILLION + 1}"),
        "[stamp_cards][1].every: must be 1000000000 or less",
    ),
    (
        "ladder count",
        edit("count = 10", f"count = {BILLION + 1}"),
        "[referral.ladder][2].count: must be 1000000000 or less",
    ),
    (
        "min_points",
        edit("min_points = 100", f"min_points = {BILLION + 1}"),
        "[redemption].min_points: must be 1000000000 or less",
    ),
    (
        "points_per_unit 1000.000001",
        edit('points_per_unit = "1"', 'points_per_unit = "1000.000001"'),
        "[earn].points_per_unit: must be 1000 or less",
    ),
    (
        "points_per_unit huge",
        edit('points_per_unit = "1"', f'points_per_unit = "{"9" * 5000}"'),
        "[earn].points_per_unit: must be 1000 or less",
    ),
    (
        "points_per_unit 1001 as integer",
        edit('points_per_unit = "1"', "points_per_unit = 1001"),
        "[earn].points_per_unit: must be 1000 or less",
    ),
    (
        "points_per_unit 7 decimals",
        edit('points_per_unit = "1"', 'points_per_unit = "0.0000001"'),
        "[earn].points_per_unit: must have at most 6 decimals",
    ),
    (
        "category multiplier",
        edit('shoes = "2"', 'shoes = "1001"'),
        "[earn].category_multipliers.shoes: must be 1000 or less",
    ),
    (
        "channel multiplier 7 decimals",
        edit('app = "1.5"', 'app = "1.5000000"'),
        "[earn].channel_multipliers.app: must have at most 6 decimals",
    ),
    (
        "tier multiplier",
        edit('multiplier = "1.5"', 'multiplier = "1000.1"'),
        "[tiers.levels][3].multiplier: must be 1000 or less",
    ),
    (
        "min_spend 13 digits",
        edit('min_spend = "2000"', 'min_spend = "1000000000000"'),
        f"[tiers.levels][3].min_spend: {MONEY_DIGITS}",
    ),
    (
        "min_spend 7 decimals",
        edit('min_spend = "2000"', 'min_spend = "2000.0000001"'),
        f"[tiers.levels][3].min_spend: {MONEY_DIGITS}",
    ),
    (
        "min_total 13 digits integer",
        edit('min_total = "3.00"', "min_total = 1000000000000"),
        f"[stamp_cards][1].min_total: {MONEY_DIGITS}",
    ),
    (
        "min_first_purchase 20000 decimals",
        edit('"20"', f'"20.{"1" * 20_000}"'),
        f"[referral].min_first_purchase: {MONEY_DIGITS}",
    ),
    (
        "expiry 1201 months",
        edit("months = 24", "months = 1201"),
        "[expiry].months: must be 1200 or less",
    ),
    (
        "expiry 200000 months",
        edit("months = 24", "months = 200000"),
        "[expiry].months: must be 1200 or less",
    ),
    (
        "window 3661 days",
        edit("window_days = 365", "window_days = 3661"),
        "[tiers].window_days: must be 3660 or less",
    ),
    (
        "window 3000000 days",
        edit("window_days = 365", "window_days = 3000000"),
        "[tiers].window_days: must be 3660 or less",
    ),
    (
        "name 1001 characters",
        edit('"Diamond Club"', f'"{LONG}x"'),
        "[program].name: must be at most 1000 characters",
    ),
    (
        "reward 1001 characters",
        edit('reward = "razor"', f'reward = "{LONG}x"'),
        "[referral.ladder][2].reward: must be at most 1000 characters",
    ),
    (
        "category 1001 characters",
        edit('categories = ["coffee"]', f'categories = ["coffee", "{LONG}x"]'),
        "[stamp_cards][1].categories[2]: must be at most 1000 characters",
    ),
    (
        "category key 1001 characters",
        edit('shoes = "2"', f'{LONG}x = "2"'),
        "[earn].category_multipliers: a key must be at most 1000 characters",
    ),
    (
        "nul in name",
        edit('"Diamond Club"', '"D\\u0000"'),
        "[program].name: must not contain U+0000",
    ),
    (
        "nul in a category key",
        edit('shoes = "2"', '"sh\\u0000oes" = "2"'),
        "[earn].category_multipliers: a key must not contain U+0000",
    ),
    (
        "nul in an action name",
        edit('name = "review_written"', 'name = "review\\u0000"'),
        "[actions][2].name: must not contain U+0000",
    ),
    (
        "nul in a reward id",
        edit('id = "voucher-5"', 'id = "\\u0000"'),
        "[rewards][1].id: must not contain U+0000",
    ),
    (
        "an integer of 5000 digits",
        edit("bonus = 100", f"bonus = {'9' * 5000}"),
        "not valid toml: an integer has more than 4300 digits",
    ),
    (
        "deeply nested arrays",
        edit('categories = ["coffee"]', f"categories = {'[' * 100_000}{']' * 100_000}"),
        "not valid toml: arrays or inline tables nested too deeply",
    ),
    (
        "deeply nested inline tables",
        edit("[redemption]\n", f"[redemption]\nx = {'{a=' * 10_000}1{'}' * 10_000}\n"),
        "not valid toml: arrays or inline tables nested too deeply",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [row[1:] for row in BEYOND], ids=[row[0] for row in BEYOND]
)
def test_programs_beyond_the_bounds_are_refused_naming_the_key(text: str, expected: str) -> None:
    assert refused(text) == "program.toml: " + expected


def test_a_program_over_1_mib_is_refused(tmp_path: Path) -> None:
    limit = 1024 * 1024
    at_limit = EXAMPLE + "#" * (limit - len(EXAMPLE.encode()) - 1) + "\n"
    assert len(at_limit.encode()) == limit
    assert isinstance(parse_program(at_limit), Program)
    over = at_limit + "\n"
    message = "too large; a program file is at most 1048576 bytes (1 MiB)"
    assert refused(over) == f"program.toml: {message}"
    path = tmp_path / "program.toml"
    path.write_text(over, encoding="utf-8")
    with pytest.raises(ProgramError, match=r"program\.toml: too large; "):
        load_program(path)
    path.write_text(at_limit, encoding="utf-8")
    assert isinstance(load_program(path), Program)


def test_a_device_that_never_ends_is_refused() -> None:
    with pytest.raises(ProgramError, match="too large"):
        load_program(Path("/dev/zero"))


def test_programs_built_in_python_keep_the_bounds() -> None:
    with pytest.raises(ValueError, match="min_spend"):
        TierLevel(name="gold", min_spend=Decimal("1E+12"), multiplier=Decimal(1))
    with pytest.raises(ValueError, match="multiplier"):
        TierLevel(name="gold", min_spend=Decimal(0), multiplier=Decimal("1000.5"))


# --- version 2 (PROGRAM.md "Version 2: what a shop runs day to day") ------------------------

# PROGRAM.md's version 2 sections, verbatim, and a second campaign written with TOML datetimes.
V2_SECTIONS = """
[pending]
days = 14                  # purchase points become spendable 14 days after the purchase

[[campaigns]]              # time-bound earning rules ("double points on shoes this weekend")
id = "shoe-weekend"
starts_at = "2026-03-06T18:00:00+01:00"   # inclusive
ends_at = "2026-03-09T00:00:00+01:00"     # exclusive, after starts_at
multiplier = "2"           # default "1"; >= 0
bonus = 0                  # fixed points per purchase it applies to; default 0
categories = ["shoes"]     # absent or empty: every item, and purchases without items
channels = ["app", "web"]  # absent or empty: every channel
tiers = ["gold"]           # absent or empty: every tier; names must be levels of [tiers]
min_total = "50"           # default "0"
max_per_customer = 1       # purchases of one customer it may apply to; absent: unlimited

[[campaigns]]
id = "spring-bonus"
starts_at = 2026-04-01T00:00:00+02:00
ends_at = 2026-04-15T00:00:00+02:00
bonus = 25

[[memberships]]            # paid VIP plans
id = "vip"
days = 365
fee = "888.00"             # the price ...
member_fee = "88.00"       # ... optional reduced price for customers whose available
member_fee_min_balance = 1000  # balance is at least this (both or neither)
multiplier = "1.05"        # earn multiplier while active, on top of the tier's

[transfers]                # members may give points to other members
min_points = 100           # default 0
"""
EXAMPLE_V2 = EXAMPLE + V2_SECTIONS


def edit_v2(old: str, new: str) -> str:
    """EXAMPLE_V2 with `old` changed in its version 2 sections only."""
    return EXAMPLE + edit(old, new, V2_SECTIONS)


def test_the_version_2_sections_load() -> None:
    program = parse_program(EXAMPLE_V2)
    assert program.pending is not None and program.pending.days == 14
    shoes, spring = program.campaigns
    assert shoes.starts_at == datetime(2026, 3, 6, 17, tzinfo=UTC)
    assert shoes.ends_at == datetime(2026, 3, 8, 23, tzinfo=UTC)
    assert (shoes.multiplier, shoes.bonus, shoes.min_total) == (Decimal(2), 0, Decimal(50))
    assert (shoes.categories, shoes.channels, shoes.tiers) == (
        ("shoes",),
        ("app", "web"),
        ("gold",),
    )
    assert shoes.max_per_customer == 1
    assert spring.starts_at == datetime(2026, 3, 31, 22, tzinfo=UTC)  # a TOML datetime
    assert (spring.multiplier, spring.bonus, spring.min_total) == (Decimal(1), 25, Decimal(0))
    assert (spring.categories, spring.channels, spring.tiers) == ((), (), ())
    assert spring.max_per_customer is None
    (vip,) = program.memberships
    assert (vip.days, vip.fee, vip.member_fee) == (365, Decimal("888.00"), Decimal("88.00"))
    assert (vip.member_fee_min_balance, vip.multiplier) == (1000, Decimal("1.05"))
    assert program.transfers is not None and program.transfers.min_points == 100


def test_version_2_defaults_and_absent_sections() -> None:
    program = parse_program(EXAMPLE)
    assert (program.pending, program.campaigns, program.memberships) == (None, (), ())
    assert program.transfers is None
    minimal = parse_program(
        MINIMAL + '[transfers]\n[[memberships]]\nid = "club"\ndays = 30\nfee = "9.99"\n'
    )
    assert minimal.transfers is not None and minimal.transfers.min_points == 0
    (club,) = minimal.memberships
    assert (club.member_fee, club.member_fee_min_balance) == (None, None)
    assert club.multiplier == Decimal(1)


@pytest.mark.parametrize(
    "text",
    [
        edit_v2("days = 14 ", "days = 0 "),  # PROGRAM.md: "Without [pending] (or d = 0)"
        edit_v2('multiplier = "2"', 'multiplier = "0"'),
        edit_v2('multiplier = "1.05"', 'multiplier = "1000"'),
        edit_v2('fee = "888.00"', 'fee = "0"'),
        edit_v2("days = 365", "days = 3660"),
        edit_v2("days = 365", "days = 1"),
        edit_v2('ends_at = "2026-03-09T00:00:00+01:00"', 'ends_at = "2026-03-06T17:00:01Z"'),
        edit_v2('tiers = ["gold"]', "tiers = []"),
    ],
    ids=[
        "pending 0 days",
        "campaign multiplier 0",
        "membership multiplier 1000",
        "free plan",
        "plan of 3660 days",
        "plan of 1 day",
        "campaign of one second",
        "campaign for every tier",
    ],
)
def test_version_2_programs_on_the_edges_load(text: str) -> None:
    assert isinstance(parse_program(text), Program)


NO_TIERS_CAMPAIGN = MINIMAL + (
    '[[campaigns]]\nid = "gold-days"\nstarts_at = "2026-01-01T00:00:00Z"\n'
    'ends_at = "2026-01-08T00:00:00Z"\ntiers = ["gold"]\n'
)

BAD_V2: list[tuple[str, str, str]] = [
    # (case, program text, the whole message after "program.toml: ")
    (
        "campaign ends before it starts",
        edit_v2('ends_at = "2026-03-09T00:00:00+01:00"', 'ends_at = "2026-03-01T00:00:00+01:00"'),
        "[campaigns][1].ends_at: must be after starts_at; give the campaign a window",
    ),
    (
        "campaign ends when it starts",
        edit_v2("ends_at = 2026-04-15T00:00:00+02:00", "ends_at = 2026-04-01T00:00:00+02:00"),
        "[campaigns][2].ends_at: must be after starts_at; give the campaign a window",
    ),
    (
        "campaign ends at its start in another offset",
        edit_v2('ends_at = "2026-03-09T00:00:00+01:00"', 'ends_at = "2026-03-06T17:00:00Z"'),
        "[campaigns][1].ends_at: must be after starts_at; give the campaign a window",
    ),
    (
        "campaign names a tier [tiers] lacks",
        edit_v2('tiers = ["gold"]', 'tiers = ["gold", "platinum"]'),
        '[campaigns][1].tiers: names tier "platinum", which [tiers] does not have '
        "(levels: bronze, gold, silver)",
    ),
    (
        "campaign names a tier without [tiers]",
        NO_TIERS_CAMPAIGN,
        '[campaigns][1].tiers: names tier "gold", which [tiers] does not have '
        "(levels: none: there is no [tiers])",
    ),
    (
        "duplicate campaign id",
        EXAMPLE_V2 + '[[campaigns]]\nid = "shoe-weekend"\nstarts_at = "2026-05-01T00:00:00Z"\n'
        'ends_at = "2026-05-02T00:00:00Z"\n',
        '[campaigns][3].id: duplicate campaign id "shoe-weekend" (also at [1]); '
        "give each its own id",
    ),
    (
        "duplicate membership id",
        EXAMPLE_V2 + '[[memberships]]\nid = "vip"\ndays = 30\nfee = "9.99"\n',
        '[memberships][2].id: duplicate membership id "vip" (also at [1]); give each its own id',
    ),
    (
        "member_fee without member_fee_min_balance",
        edit_v2(
            "member_fee_min_balance = 1000  # balance is at least this (both or neither)\n", ""
        ),
        "[memberships][1].member_fee_min_balance: is missing; member_fee needs it "
        "(give both or neither)",
    ),
    (
        "member_fee_min_balance without member_fee",
        edit_v2('member_fee = "88.00"       # ... optional reduced price', "# no reduced price"),
        "[memberships][1].member_fee: is missing; member_fee_min_balance needs it "
        "(give both or neither)",
    ),
    (
        "membership of 0 days",
        edit_v2("days = 365", "days = 0"),
        "[memberships][1].days: must be 1 or more",
    ),
    (
        "membership of -30 days",
        edit_v2("days = 365", "days = -30"),
        "[memberships][1].days: must be 1 or more",
    ),
    (
        "membership of 3661 days",
        edit_v2("days = 365", "days = 3661"),
        "[memberships][1].days: must be 3660 or less",
    ),
    (
        "pending of -1 days",
        edit_v2("days = 14 ", "days = -1 "),
        "[pending].days: must be 0 or more",
    ),
    (
        "pending of 3661 days",
        edit_v2("days = 14 ", "days = 3661 "),
        "[pending].days: must be 3660 or less",
    ),
    (
        "pending without days",
        edit_v2("days = 14 ", "# days = 14 "),
        "[pending].days: missing; add it",
    ),
    (
        "pending days as a string",
        edit_v2("days = 14 ", 'days = "14" '),
        "[pending].days: must be an integer",
    ),
    (
        "negative campaign multiplier",
        edit_v2('multiplier = "2"', 'multiplier = "-2"'),
        "[campaigns][1].multiplier: must not be negative; use 0 or more",
    ),
    (
        "float campaign multiplier",
        edit_v2('multiplier = "2"', "multiplier = 2.5"),
        '[campaigns][1].multiplier: is a float; write it as a string, like "2.5" '
        "(floats are inexact)",
    ),
    (
        "word for a campaign multiplier",
        edit_v2('multiplier = "2"', 'multiplier = "double"'),
        '[campaigns][1].multiplier: must be a plain decimal like "1.25" '
        '(no exponent, "+" sign or spaces)',
    ),
    (
        "campaign multiplier over 1000",
        edit_v2('multiplier = "2"', 'multiplier = "1000.5"'),
        "[campaigns][1].multiplier: must be 1000 or less",
    ),
    (
        "campaign multiplier with 7 decimals",
        edit_v2('multiplier = "2"', 'multiplier = "1.0000001"'),
        "[campaigns][1].multiplier: must have at most 6 decimals",
    ),
    (
        "negative membership multiplier",
        edit_v2('multiplier = "1.05"', 'multiplier = "-1.05"'),
        "[memberships][1].multiplier: must not be negative; use 0 or more",
    ),
    (
        "membership multiplier over 1000",
        edit_v2('multiplier = "1.05"', 'multiplier = "1001"'),
        "[memberships][1].multiplier: must be 1000 or less",
    ),
    (
        "naive starts_at",
        edit_v2('starts_at = "2026-03-06T18:00:00+01:00"', 'starts_at = "2026-03-06T18:00:00"'),
        "[campaigns][1].starts_at: must be an instant with an offset like "
        '"2026-03-06T18:00:00+01:00"',
    ),
    (
        "local TOML datetime",
        edit_v2("starts_at = 2026-04-01T00:00:00+02:00", "starts_at = 2026-04-01T00:00:00"),
        "[campaigns][2].starts_at: must be an instant with an offset like "
        '"2026-03-06T18:00:00+01:00"',
    ),
    (
        "date for an instant",
        edit_v2("ends_at = 2026-04-15T00:00:00+02:00", "ends_at = 2026-04-15"),
        "[campaigns][2].ends_at: must be an instant with an offset like "
        '"2026-03-06T18:00:00+01:00"',
    ),
    (
        "campaign without starts_at",
        edit_v2("starts_at = 2026-04-01T00:00:00+02:00\n", ""),
        "[campaigns][2].starts_at: missing; add it",
    ),
    (
        "campaign for an unknown channel",
        edit_v2('channels = ["app", "web"]', 'channels = ["app", "shop"]'),
        "[campaigns][1].channels[2]: must be one of 'pos', 'web' or 'app'",
    ),
    (
        "negative campaign bonus",
        edit_v2("bonus = 25", "bonus = -25"),
        "[campaigns][2].bonus: must be 0 or more",
    ),
    (
        "campaign bonus over 10^9",
        edit_v2("bonus = 25", f"bonus = {BILLION + 1}"),
        "[campaigns][2].bonus: must be 1000000000 or less",
    ),
    (
        "campaign max_per_customer 0",
        edit_v2("max_per_customer = 1  ", "max_per_customer = 0  "),
        "[campaigns][1].max_per_customer: must be 1 or more",
    ),
    (
        "float campaign min_total",
        edit_v2('min_total = "50"', "min_total = 50.5"),
        '[campaigns][1].min_total: is a float; write it as a string, like "50.5" '
        "(floats are inexact)",
    ),
    (
        "unknown key in a campaign",
        edit_v2("bonus = 25", "bonus = 25\npoints = 3"),
        "[campaigns][2].points: unknown key; remove it (known: id, starts_at, ends_at, "
        "multiplier, bonus, categories, channels, tiers, min_total, max_per_customer)",
    ),
    (
        "plan without a fee",
        edit_v2('fee = "888.00"             # the price ...\n', ""),
        "[memberships][1].fee: missing; add it",
    ),
    (
        "float fee",
        edit_v2('fee = "888.00"', "fee = 888.0"),
        '[memberships][1].fee: is a float; write it as a string, like "888.0" (floats are inexact)',
    ),
    (
        "negative member_fee",
        edit_v2('member_fee = "88.00"', 'member_fee = "-88.00"'),
        "[memberships][1].member_fee: must not be negative; use 0 or more",
    ),
    (
        "fee with 13 digits",
        edit_v2('fee = "888.00"', 'fee = "1000000000000"'),
        f"[memberships][1].fee: {MONEY_DIGITS}",
    ),
    (
        "member_fee_min_balance as a string",
        edit_v2("member_fee_min_balance = 1000", 'member_fee_min_balance = "1000"'),
        "[memberships][1].member_fee_min_balance: must be an integer",
    ),
    ("empty plan id", edit_v2('id = "vip"', 'id = ""'), "[memberships][1].id: must not be empty"),
    (
        "negative transfer minimum",
        edit_v2("min_points = 100           # default 0", "min_points = -1"),
        "[transfers].min_points: must be 0 or more",
    ),
    (
        "unknown key in [transfers]",
        edit_v2("min_points = 100           # default 0", "max_points = 100"),
        "[transfers].max_points: unknown key; remove it (known: min_points)",
    ),
    (
        "campaigns as one table",
        MINIMAL + '[campaigns]\nid = "x"\n',
        "[campaigns]: must be an array of tables; write each as [[campaigns]]",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [row[1:] for row in BAD_V2], ids=[row[0] for row in BAD_V2]
)
def test_bad_version_2_programs_are_refused_naming_the_key(text: str, expected: str) -> None:
    assert refused(text) == "program.toml: " + expected


# --- loading --------------------------------------------------------------------------------


def test_load_program_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "program.toml"
    path.write_text(EXAMPLE, encoding="utf-8")
    assert load_program(path) == parse_program(EXAMPLE)


def test_load_program_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "program.toml"
    path.write_text(edit('"EUR"', '"XYZ"'), encoding="utf-8")
    with pytest.raises(
        ProgramError, match=r"^.*program\.toml: \[program\]\.currency: unknown currency"
    ):
        load_program(path)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda tmp: tmp / "absent.toml", "absent.toml: no such file; check the program path"),
        (lambda tmp: tmp, ": cannot read: "),
    ],
    ids=["missing file", "a folder"],
)
def test_load_program_refuses_unreadable_files(tmp_path: Path, make: object, expected: str) -> None:
    assert callable(make)
    path: Path = make(tmp_path)
    with pytest.raises(ProgramError) as caught:
        load_program(path)
    assert expected in str(caught.value)


def test_load_program_refuses_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "program.toml"
    path.write_bytes(EXAMPLE.encode().replace(b"Diamond", b"Diam\xffnd"))
    with pytest.raises(ProgramError, match=r"not utf-8 \(byte \d+\); save the file as utf-8"):
        load_program(path)


# --- the hash -------------------------------------------------------------------------------


def test_hash_ignores_whitespace_comments_and_spelling() -> None:
    reference = program_hash(EXAMPLE)
    assert len(reference) == 64 and int(reference, 16) >= 0
    uncommented = "\n".join(line.split("#")[0].rstrip() for line in EXAMPLE.splitlines())
    spaced = EXAMPLE.replace(" = ", "   =   ").replace("\n[", "\n\n\n[")
    reordered = edit(
        "[expiry]\nmonths = 24", "[birthday]\nbonus = 250\n[expiry]\nmonths = 24"
    ).replace("[birthday]\nbonus = 250\n\n[referral]", "[referral]")
    spelled = edit('points_per_unit = "1"', "points_per_unit = 1").replace('"1.5"', '"1.50"')
    inline = edit('category_multipliers = { shoes = "2" }', 'category_multipliers.shoes = "2"')
    for variant in (uncommented, spaced, reordered, spelled, inline):
        assert variant != EXAMPLE
        assert program_hash(variant) == reference


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('points_per_unit = "1"', 'points_per_unit = "2"'),
        ("months = 24", "months = 12"),
        ('name = "Diamond Club"', 'name = "Diamond club"'),
        ('id = "voucher-5"', 'id = "voucher-6"'),
    ],
)
def test_hash_changes_with_the_content(old: str, new: str) -> None:
    assert program_hash(edit(old, new)) != program_hash(EXAMPLE)


def test_hash_refuses_a_bad_program() -> None:
    with pytest.raises(ProgramError, match="unknown currency"):
        program_hash(edit('"EUR"', '"XYZ"'))


# examples/program.toml as it was at commit f9e73da, before version 2 (comments left out).
V1_SHOP = """\
[program]
name = "Kiez Club"
currency = "EUR"
timezone = "Europe/Berlin"
[earn]
points_per_unit = "1"
category_multipliers = { shoes = "2", coffee = "0.5" }
channel_multipliers = { app = "1.5" }
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
min_spend = "300"
multiplier = "1.25"
[[tiers.levels]]
name = "gold"
min_spend = "1000"
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
count = 2
reward = "tote-bag"
[[referral.ladder]]
count = 3
reward = "wireless-headphones"
[[actions]]
name = "newsletter_subscribed"
points = 50
max_per_customer = 1
[[actions]]
name = "review_written"
points = 20
max_per_customer = 3
[[stamp_cards]]
id = "coffee-card"
every = 5
min_total = "2.50"
categories = ["coffee"]
reward = "free-coffee"
[[rewards]]
id = "voucher-5"
cost = 500
[[rewards]]
id = "canvas-bag"
cost = 300
[redemption]
min_points = 100
"""


# Hashes of version 1 programs as the code before version 2 (commit 0f143e8) computed them:
# a ledger kept under a version 1 program must go on without a re-run.
V1_HASHES: list[tuple[str, str, str]] = [
    (
        "PROGRAM.md's example",
        EXAMPLE,
        "c851d8ac1bc9cd477515638728643794dc691b681cc2ad4ec979d319d0d060d0",
    ),
    (
        "a minimal program",
        MINIMAL,
        "0f9e94cc7f5f9ca58b76bece13013d8644550beca705f35395e98a0f0b465146",
    ),
    (
        "examples/program.toml of commit f9e73da",
        V1_SHOP,
        "39ad0f012d8cff95bae0f6285cae9f28ea37aab14fa29579c927ebb565ae3947",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [row[1:] for row in V1_HASHES], ids=[row[0] for row in V1_HASHES]
)
def test_a_version_1_programs_hash_is_what_it_was_before_version_2(
    text: str, expected: str
) -> None:
    assert program_hash(text) == expected


def test_empty_version_2_arrays_hash_as_version_1() -> None:
    assert program_hash("campaigns = []\nmemberships = []\n" + MINIMAL) == program_hash(MINIMAL)


@pytest.mark.parametrize(
    "text",
    [
        MINIMAL + "[transfers]\n",  # enabling transfers changes what the ledger decides
        MINIMAL + "[pending]\ndays = 0\n",
        EXAMPLE_V2,
        edit_v2("days = 14 ", "days = 15 "),
        edit_v2('multiplier = "2"', 'multiplier = "3"'),
        edit_v2('member_fee = "88.00"', 'member_fee = "89.00"'),
        edit_v2("min_points = 100 ", "min_points = 101 "),
        edit_v2('ends_at = "2026-03-09T00:00:00+01:00"', 'ends_at = "2026-03-09T00:00:01+01:00"'),
    ],
    ids=[
        "[transfers]",
        "[pending] of 0 days",
        "every section",
        "pending days",
        "campaign multiplier",
        "member fee",
        "transfer minimum",
        "campaign end",
    ],
)
def test_hash_changes_with_the_version_2_content(text: str) -> None:
    assert program_hash(text) not in {program_hash(MINIMAL), program_hash(EXAMPLE)}
    if text.startswith(EXAMPLE) and text != EXAMPLE_V2:
        assert program_hash(text) != program_hash(EXAMPLE_V2)


def test_hash_reads_campaign_instants_as_instants() -> None:
    utc = edit_v2('starts_at = "2026-03-06T18:00:00+01:00"', 'starts_at = "2026-03-06T17:00:00Z"')
    toml = edit_v2(
        'starts_at = "2026-03-06T18:00:00+01:00"', "starts_at = 2026-03-06T18:00:00+01:00"
    )
    assert program_hash(utc) == program_hash(toml) == program_hash(EXAMPLE_V2)


def test_the_example_program_is_the_version_1_shop_with_every_version_2_section() -> None:
    program = load_program(EXAMPLES / "program.toml")
    assert program.pending is not None and program.pending.days > 0
    assert len(program.campaigns) >= 2 and any(c.categories for c in program.campaigns)
    assert any(plan.member_fee is not None for plan in program.memberships)
    assert program.transfers is not None
    assert program_hash(example_program_v1()) == program_hash(V1_SHOP)
