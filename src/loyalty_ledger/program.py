"""The program file (PROGRAM.md's TOML) as a strict, frozen model; loading refuses bad programs."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args, get_origin

from annotated_types import Ge, Le
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    Strict,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

from loyalty_ledger.errors import UserError

__all__ = [
    "ISO_4217_CODES",
    "Action",
    "BirthdaySection",
    "Campaign",
    "Channel",
    "EarnSection",
    "ExpirySection",
    "LadderStep",
    "MembershipPlan",
    "PendingSection",
    "Program",
    "ProgramError",
    "ProgramSection",
    "RedemptionSection",
    "ReferralSection",
    "Reward",
    "SignupSection",
    "StampCard",
    "TierLevel",
    "TiersSection",
    "TransfersSection",
    "load_program",
    "parse_program",
    "program_hash",
    "read_program_text",
]

Channel = Literal["pos", "web", "app"]

# ISO 4217 list one, active codes as of 2026: national and regional currencies, funds
# (BOV, CHE, CHW, CLF, COU, MXV, USN, UYI, UYW), metals and units. Left out: XTS (testing)
# and XXX (no currency), which no program can be kept in, and the withdrawn codes that
# linger in old lists (ANG, BGN, CUC, HRK, SLL, ZWL, ...).
# One string, not a list literal: it reads like the standard's table and is easy to check.
ISO_4217_CODES: Final = frozenset(
    """
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BHD BIF BMD BND BOB BOV BRL BSD BTN BWP
    BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN
    ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK
    JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD
    MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP
    PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP
    SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV
    WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XUA YER ZAR ZMW ZWG
    """.split()  # noqa: SIM905
)

_PLAIN_DECIMAL: Final = re.compile(r"-?[0-9]+(\.[0-9]+)?")

# PROGRAM.md "Bounds": a program outside them is refused at load, so no figure of a valid
# program can overflow the engine's dates or the database's columns.
PROGRAM_BYTES_MAX: Final = 1024 * 1024
COUNT_MAX: Final = 1_000_000_000  # bonuses, points, costs, counts, `every`
FACTOR_MAX: Final = Decimal(1000)  # multipliers and points_per_unit
DECIMALS_MAX: Final = 6
MONEY_DIGITS_MAX: Final = 12  # before the point, as money on the wire
EXPIRY_MONTHS_MAX: Final = 1200
WINDOW_DAYS_MAX: Final = 3660  # also `[pending] days` and a membership's `days`
TEXT_LENGTH_MAX: Final = 1000
NO_NUL_PATTERN: Final = r"^[^\x00]*$"  # PostgreSQL text cannot hold U+0000


@dataclass(frozen=True, slots=True)
class _AmountRule:
    """A pydantic annotation: a TOML integer or plain decimal string, >= 0, as `Decimal`.

    At most 6 decimals; a factor (`most` given) is at most `most`, money has at most 12
    digits before the point.
    """

    most: Decimal | None = None

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            self._validate,
            json_schema_input_schema=core_schema.union_schema(
                [core_schema.str_schema(pattern=_PLAIN_DECIMAL.pattern), core_schema.int_schema()]
            ),
        )

    def _validate(self, value: object) -> Decimal:
        text = _plain_decimal(value)
        whole, _, fraction = text.lstrip("-").partition(".")
        if text.startswith("-") and whole.strip("0") + fraction.strip("0"):
            raise PydanticCustomError("amount_negative", "must not be negative; use 0 or more")
        if self.most is None and (len(whole) > MONEY_DIGITS_MAX or len(fraction) > DECIMALS_MAX):
            raise PydanticCustomError(
                "amount_digits",
                "must have at most {whole} digits before the point and {fraction} after",
                {"whole": MONEY_DIGITS_MAX, "fraction": DECIMALS_MAX},
            )
        amount = Decimal(text).copy_abs()  # "-0" is 0
        if self.most is not None and amount > self.most:
            raise PydanticCustomError(
                "amount_most", "must be {most} or less", {"most": f"{self.most:f}"}
            )
        if len(fraction) > DECIMALS_MAX:
            raise PydanticCustomError(
                "amount_decimals", "must have at most {most} decimals", {"most": DECIMALS_MAX}
            )
        return amount


def _plain_decimal(value: object) -> str:
    """`value`, a TOML integer or plain decimal string, as plain decimal text."""
    if type(value) is Decimal and value.is_finite():
        value = f"{value:f}"  # a program built in Python: held to the same rules
    if isinstance(value, float):
        raise PydanticCustomError(
            "amount_float",
            "is a float; write it as a string, like {example} (floats are inexact)",
            {"example": _float_example(value)},
        )
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PydanticCustomError(
            "amount_type", 'must be a decimal string like "1.25" or an integer'
        )
    if isinstance(value, int):
        return str(value)  # tomllib reads at most 4300 digits
    if _PLAIN_DECIMAL.fullmatch(value) is None:
        raise PydanticCustomError(
            "amount_format",
            'must be a plain decimal like "1.25" (no exponent, "+" sign or spaces)',
        )
    return value


def _float_example(value: float) -> str:
    exact = Decimal(repr(value))
    return f'"{exact:f}"' if exact.is_finite() else '"1.25"'


class _InstantRule:
    """A pydantic annotation: an RFC 3339 string or TOML datetime with an offset, as UTC."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate, json_schema_input_schema=core_schema.str_schema()
        )

    @staticmethod
    def _validate(value: object) -> datetime:
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.upper())
            except ValueError:
                raise _not_an_instant() from None
        if not isinstance(value, datetime) or value.utcoffset() is None:
            raise _not_an_instant()
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise _not_an_instant() from None


def _not_an_instant() -> PydanticCustomError:
    return PydanticCustomError(
        "instant_format", 'must be an instant with an offset like "2026-03-06T18:00:00+01:00"'
    )


Money = Annotated[Decimal, _AmountRule()]
Instant = Annotated[datetime, _InstantRule]
Days = Annotated[int, Strict(), Ge(1), Le(WINDOW_DAYS_MAX)]
Factor = Annotated[Decimal, _AmountRule(most=FACTOR_MAX)]
Count = Annotated[int, Strict(), Ge(0), Le(COUNT_MAX)]
PositiveCount = Annotated[int, Strict(), Ge(1), Le(COUNT_MAX)]
Name = Annotated[
    str,
    StringConstraints(
        strict=True, min_length=1, max_length=TEXT_LENGTH_MAX, pattern=NO_NUL_PATTERN
    ),
]
Text = Annotated[
    str, StringConstraints(strict=True, max_length=TEXT_LENGTH_MAX, pattern=NO_NUL_PATTERN)
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _rule(message: str, index: int, key: str) -> PydanticCustomError:
    """An error about element `index` (0-based) of the validated array, at its `key`."""
    return PydanticCustomError(
        "program_rule", "{message}", {"message": message, "at": (index, key)}
    )


def _refuse_duplicates(values: list[Any], what: str, key: str) -> None:
    first_at: dict[Any, int] = {}
    for index, value in enumerate(values):
        if value in first_at:
            raise _rule(
                f"duplicate {what} {json.dumps(value)} (also at [{first_at[value] + 1}]); "
                f"give each its own {key}",
                index,
                key,
            )
        first_at[value] = index


class ProgramSection(_Section):
    name: Name
    currency: Text
    timezone: Text

    @field_validator("currency")
    @classmethod
    def _iso_4217(cls, currency: str) -> str:
        if currency not in ISO_4217_CODES:
            hint = (
                f' (did you mean "{currency.upper()}"?)'
                if currency.upper() in ISO_4217_CODES
                else ""
            )
            raise PydanticCustomError(
                "currency",
                'unknown currency {currency}{hint}; use an active ISO 4217 code like "EUR"',
                {"currency": json.dumps(currency), "hint": hint},
            )
        return currency

    @field_validator("timezone")
    @classmethod
    def _iana_zone(cls, timezone: str) -> str:
        # "localtime" would load this machine's zone: the ledger must not depend on it.
        if timezone == "localtime" or not _zone_loads(timezone):
            raise PydanticCustomError(
                "timezone",
                'unknown time zone {zone}; use an IANA name like "Europe/Berlin"',
                {"zone": json.dumps(timezone)},
            )
        return timezone


def _zone_loads(key: str) -> bool:
    try:
        zoneinfo.ZoneInfo(key)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


class EarnSection(_Section):
    points_per_unit: Factor
    category_multipliers: dict[Text, Factor] = Field(default_factory=dict)
    channel_multipliers: dict[Channel, Factor] = Field(default_factory=dict)


class ExpirySection(_Section):
    months: Annotated[int, Strict(), Ge(0), Le(EXPIRY_MONTHS_MAX)] = 0


class TierLevel(_Section):
    name: Name
    min_spend: Money
    multiplier: Factor


class TiersSection(_Section):
    window_days: Annotated[int, Strict(), Ge(1), Le(WINDOW_DAYS_MAX)] = 365
    levels: Annotated[tuple[TierLevel, ...], Field(min_length=1)]

    @field_validator("levels")
    @classmethod
    def _increasing_from_zero(cls, levels: tuple[TierLevel, ...]) -> tuple[TierLevel, ...]:
        if levels[0].min_spend != 0:
            raise _rule(
                f"must be 0 for the first level (got {levels[0].min_spend}); start the levels at 0",
                0,
                "min_spend",
            )
        for index in range(1, len(levels)):
            previous = levels[index - 1].min_spend
            if levels[index].min_spend <= previous:
                raise _rule(
                    f"must be greater than the previous level's ({previous}); "
                    "make the levels increase",
                    index,
                    "min_spend",
                )
        _refuse_duplicates([level.name for level in levels], "tier name", "name")
        return levels


class SignupSection(_Section):
    bonus: Count = 0


class BirthdaySection(_Section):
    bonus: Count = 0


class LadderStep(_Section):
    count: PositiveCount
    reward: Name


class ReferralSection(_Section):
    referrer_bonus: Count = 0
    referee_bonus: Count = 0
    min_first_purchase: Money = Decimal(0)
    ladder: tuple[LadderStep, ...] = ()

    @field_validator("ladder")
    @classmethod
    def _unique_counts(cls, ladder: tuple[LadderStep, ...]) -> tuple[LadderStep, ...]:
        _refuse_duplicates([step.count for step in ladder], "ladder count", "count")
        return ladder


class Action(_Section):
    name: Name
    points: Count
    max_per_customer: PositiveCount | None = None


class StampCard(_Section):
    id: Name
    every: PositiveCount
    min_total: Money = Decimal(0)
    categories: tuple[Text, ...] = ()
    reward: Name


class Reward(_Section):
    id: Name
    cost: PositiveCount


class RedemptionSection(_Section):
    min_points: Count = 0


class PendingSection(_Section):
    days: Annotated[int, Strict(), Ge(0), Le(WINDOW_DAYS_MAX)]


class Campaign(_Section):
    id: Name
    starts_at: Instant
    ends_at: Instant
    multiplier: Factor = Decimal(1)
    bonus: Count = 0
    categories: tuple[Text, ...] = ()
    channels: tuple[Channel, ...] = ()
    tiers: tuple[Name, ...] = ()
    min_total: Money = Decimal(0)
    max_per_customer: PositiveCount | None = None

    @model_validator(mode="after")
    def _ends_after_start(self) -> Campaign:
        if self.ends_at <= self.starts_at:
            raise PydanticCustomError(
                "program_rule",
                "{message}",
                {"message": "must be after starts_at; give the campaign a window",
                 "at": ("ends_at",)},
            )  # fmt: skip
        return self


class MembershipPlan(_Section):
    id: Name
    days: Days
    fee: Money
    member_fee: Money | None = None
    member_fee_min_balance: Count | None = None
    multiplier: Factor = Decimal(1)

    @model_validator(mode="after")
    def _member_fee_pair(self) -> MembershipPlan:
        if (self.member_fee is None) != (self.member_fee_min_balance is None):
            given, missing = (
                ("member_fee", "member_fee_min_balance")
                if self.member_fee is not None
                else ("member_fee_min_balance", "member_fee")
            )
            raise PydanticCustomError(
                "program_rule",
                "{message}",
                {"message": f"is missing; {given} needs it (give both or neither)",
                 "at": (missing,)},
            )  # fmt: skip
        return self


class TransfersSection(_Section):
    min_points: Count = 0


class Program(_Section):
    program: ProgramSection
    earn: EarnSection
    expiry: ExpirySection | None = None
    tiers: TiersSection | None = None
    signup: SignupSection | None = None
    birthday: BirthdaySection | None = None
    referral: ReferralSection | None = None
    redemption: RedemptionSection | None = None
    actions: tuple[Action, ...] = ()
    stamp_cards: tuple[StampCard, ...] = ()
    rewards: tuple[Reward, ...] = ()
    pending: PendingSection | None = None
    campaigns: tuple[Campaign, ...] = ()
    memberships: tuple[MembershipPlan, ...] = ()
    transfers: TransfersSection | None = None

    @field_validator("campaigns")
    @classmethod
    def _unique_campaigns(cls, campaigns: tuple[Campaign, ...]) -> tuple[Campaign, ...]:
        _refuse_duplicates([campaign.id for campaign in campaigns], "campaign id", "id")
        return campaigns

    @field_validator("memberships")
    @classmethod
    def _unique_plans(cls, plans: tuple[MembershipPlan, ...]) -> tuple[MembershipPlan, ...]:
        _refuse_duplicates([plan.id for plan in plans], "membership id", "id")
        return plans

    @model_validator(mode="after")
    def _campaign_tiers_exist(self) -> Program:
        levels = {level.name for level in self.tiers.levels} if self.tiers else set()
        for index, campaign in enumerate(self.campaigns):
            for tier in campaign.tiers:
                if tier not in levels:
                    known = ", ".join(sorted(levels)) if levels else "none: there is no [tiers]"
                    raise PydanticCustomError(
                        "program_rule",
                        "{message}",
                        {"message": f"names tier {json.dumps(tier)}, which [tiers] does not "
                         f"have (levels: {known})", "at": ("campaigns", index, "tiers")},
                    )  # fmt: skip
        return self

    @field_validator("actions")
    @classmethod
    def _unique_actions(cls, actions: tuple[Action, ...]) -> tuple[Action, ...]:
        _refuse_duplicates([action.name for action in actions], "action name", "name")
        return actions

    @field_validator("stamp_cards")
    @classmethod
    def _unique_cards(cls, cards: tuple[StampCard, ...]) -> tuple[StampCard, ...]:
        _refuse_duplicates([card.id for card in cards], "stamp card id", "id")
        return cards

    @field_validator("rewards")
    @classmethod
    def _unique_rewards(cls, rewards: tuple[Reward, ...]) -> tuple[Reward, ...]:
        _refuse_duplicates([reward.id for reward in rewards], "reward id", "id")
        return rewards


class ProgramError(UserError):
    """A program that cannot be used; the message is one line that names the key and the fix."""


def parse_program(text: str, source: str = "program") -> Program:
    """Parse and validate a program's TOML text; `source` starts every error message.

    Array elements in messages are counted from 1, as the `[[...]]` blocks appear in the file.
    """
    if len(text) > PROGRAM_BYTES_MAX or len(text.encode()) > PROGRAM_BYTES_MAX:
        raise ProgramError(_too_large(source))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProgramError(f"{source}: not valid toml: {_lower_first(str(e))}") from None
    except RecursionError:
        raise ProgramError(
            f"{source}: not valid toml: arrays or inline tables nested too deeply"
        ) from None
    except ValueError:  # int() refuses more than 4300 digits, far beyond any bound
        raise ProgramError(
            f"{source}: not valid toml: an integer has more than 4300 digits"
        ) from None
    try:
        return Program.model_validate(data)
    except ValidationError as e:
        raise ProgramError(f"{source}: {_describe(e)}") from None


def _too_large(source: object) -> str:
    return f"{source}: too large; a program file is at most {PROGRAM_BYTES_MAX} bytes (1 MiB)"


def load_program(path: Path) -> Program:
    """Read and validate the program file at `path`."""
    return parse_program(read_program_text(path), str(path))


def read_program_text(path: Path) -> str:
    """The program file's text, at most PROGRAM_BYTES_MAX bytes of UTF-8 (a device may never
    end); raises ProgramError naming the path."""
    try:
        with path.open("rb") as file:
            raw = file.read(PROGRAM_BYTES_MAX + 1)
    except FileNotFoundError:
        raise ProgramError(f"{path}: no such file; check the program path") from None
    except OSError as e:
        raise ProgramError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(raw) > PROGRAM_BYTES_MAX:
        raise ProgramError(_too_large(path))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProgramError(f"{path}: not utf-8 (byte {e.start}); save the file as utf-8") from None


def program_hash(text: str) -> str:
    """Sha256 hex of the validated program, so whitespace, comments and key order don't count."""
    return hash_of(parse_program(text))


def hash_of(program: Program) -> str:
    """`program_hash` of a program already parsed."""
    dumped = program.model_dump(mode="python")
    for key in _VERSION_2_SECTIONS:
        if not dumped[key]:
            # A program without them hashes as it did before version 2 existed, so a ledger
            # kept under it goes on without a re-run.
            del dumped[key]
    canonical = json.dumps(
        _canonical(dumped),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


_VERSION_2_SECTIONS: Final = ("pending", "campaigns", "memberships", "transfers")


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()  # UTC already: one instant, one text
    if isinstance(value, Decimal):
        return f"{value.normalize():f}"  # "1.50" and "1.5" are one amount
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    return value


# Messages for pydantic's own error types; the program's rules carry their own message.
_MESSAGES: Final[dict[str, str]] = {
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters",
    "string_pattern_mismatch": "must not contain U+0000",  # the only pattern: NO_NUL_PATTERN
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "greater_than_equal": "must be {ge} or more",
    "less_than_equal": "must be {le} or less",
    "too_short": "must have at least {min_length} entry; add one",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dict_type": "must be a table",
    "tuple_type": "must be an array",
    "literal_error": "must be one of {expected}",
}


def _describe(error: ValidationError) -> str:
    errors = error.errors(include_url=False)
    first = errors[0]
    loc = tuple(first["loc"])
    kind = first["type"]
    ctx: dict[str, Any] = dict(first.get("ctx") or {})
    if kind == "program_rule":
        loc += ctx["at"]
        message = str(ctx["message"])
    elif kind == "extra_forbidden":
        known = ", ".join(_known_keys(loc))
        message = f"unknown key; remove it (known: {known})"
    elif kind == "missing" and _is_table_array(loc):
        message = f"missing; add at least one [[{'.'.join(map(str, loc))}]]"
    elif kind == "missing":
        message = "missing; add it"
    elif kind == "tuple_type" and _is_table_array(loc):
        message = f"must be an array of tables; write each as [[{'.'.join(map(str, loc))}]]"
    elif loc and loc[-1] == "[key]" and kind == "literal_error":
        loc = loc[:-1]
        message = f"unknown key; use one of {ctx.get('expected', 'the known keys')}"
    elif loc and loc[-1] == "[key]":  # the key itself is not shown: it may be long or hold NUL
        loc = loc[:-2]
        message = "a key " + _MESSAGES.get(kind, str(first["msg"])).format(**ctx)
    elif kind in _MESSAGES:
        message = _MESSAGES[kind].format(**ctx)
    else:
        message = _lower_first(str(first["msg"]))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{_toml_path(loc)}: {message}{more}"


def _toml_path(loc: tuple[int | str, ...]) -> str:
    """("tiers", "levels", 1, "min_spend") -> "[tiers.levels][2].min_spend"; arrays count from 1.

    The table in brackets is the top-level one, or the array of tables the location is in.
    """
    if not loc:
        return "(top level)"
    head = 1
    while head < len(loc) and isinstance(loc[head], str):
        head += 1
    if head == len(loc) or head > 2:
        head = 1  # no array of tables (at most two deep in the program file) on the way
    out = "[" + ".".join(str(part) for part in loc[:head]) + "]"
    for part in loc[head:]:
        out += f"[{part + 1}]" if isinstance(part, int) else f".{part}"
    return out


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the table holding `loc`'s last key allows, for an "unknown key" message."""
    table = _table_at(loc[:-1])
    return list(table.model_fields) if table is not None else []


def _is_table_array(loc: tuple[int | str, ...]) -> bool:
    table = _table_at(loc[:-1])
    field = table.model_fields.get(str(loc[-1])) if table is not None and loc else None
    return (
        field is not None
        and get_origin(field.annotation) is tuple
        and _model_in(field.annotation) is not None
    )


def _table_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model of the table at `loc` (array indexes skipped), or None if `loc` is no table."""
    model: type[BaseModel] = Program
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        nested = _model_in(field.annotation) if field is not None else None
        if nested is None:
            return None
        model = nested
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
