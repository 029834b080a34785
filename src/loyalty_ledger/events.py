"""Input events, the wire contract of PROGRAM.md, and `decode`: raw line -> event or reason."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from annotated_types import Ge, Gt, Le, MaxLen
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    Strict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from loyalty_ledger.program import Channel

__all__ = [
    "EVENT_CLASSES",
    "EVENT_TYPES",
    "MAX_LINE_BYTES",
    "Action",
    "Adjustment",
    "Event",
    "Id",
    "Invalid",
    "Item",
    "Membership",
    "Money",
    "NonEmptyStr",
    "PositiveMoney",
    "Purchase",
    "Redemption",
    "Referral",
    "Return",
    "Signup",
    "Tick",
    "Transfer",
    "decode",
    "json_schemas",
]

MAX_LINE_BYTES: Final = 1024 * 1024
# PROGRAM.md "Bounds": every figure has a limit, so no input can crash a consumer or
# overflow a read model; what is outside them is a dead letter whose reason names the field.
MONEY_PATTERN: Final = r"^-?[0-9]{1,12}(\.[0-9]{1,6})?$"
MONEY_DIGITS: Final = "must have at most 12 digits before the point and 6 after"
# PostgreSQL text cannot hold U+0000: a string with it could never be stored.
NO_NUL_PATTERN: Final = r"^[^\x00]*$"
TEXT_LENGTH_MAX: Final = 1000
QUANTITY_MAX: Final = 1_000_000
ITEMS_MAX: Final = 1000
POINTS_MAX: Final = 1_000_000_000
REASON_LENGTH_MAX: Final = 200
FIRST_INSTANT: Final = datetime(1970, 1, 1, tzinfo=UTC)
LAST_INSTANT: Final = datetime(2999, 12, 31, 23, 59, 59, tzinfo=UTC)
FIRST_BIRTH_DATE: Final = date(1900, 1, 1)
LAST_BIRTH_DATE: Final = date(2999, 12, 31)
_BOM: Final = b"\xef\xbb\xbf"
INSTANT_PATTERN: Final = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
DATE_PATTERN: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"

# The form nearly every amount comes in: no sign, so `Decimal` of it is the amount itself.
_PLAIN_MONEY_PATTERN: Final = r"^[0-9]{1,12}(\.[0-9]{1,6})?$"
_MONEY_RE: Final = re.compile(MONEY_PATTERN)
_ANY_MONEY_RE: Final = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_INSTANT_RE: Final = re.compile(INSTANT_PATTERN)
_DATE_RE: Final = re.compile(DATE_PATTERN)

_MONEY_FORMAT: Final = 'must be a decimal string like "59.90"'
_INSTANT_FORMAT: Final = 'must be an instant with an offset like "2026-03-01T14:05:00+01:00"'
_DATE_FORMAT: Final = 'must be a date string like "1990-05-17"'


def _wire_fast_path(
    rule: Callable[[Any], Any], common_form: core_schema.CoreSchema
) -> core_schema.CoreSchema:
    """A field checked by the Python `rule`, or, strictly off the wire, by `common_form` only.

    `decode` validates strictly first: `common_form` runs mostly in pydantic-core and must
    accept only text that `rule` accepts, to the same value. Whatever it refuses is validated
    again laxly, where `rule` names the reason. Python inputs always meet `rule`.
    """
    checked = core_schema.no_info_plain_validator_function(rule)
    return core_schema.lax_or_strict_schema(
        lax_schema=checked,
        strict_schema=core_schema.json_or_python_schema(
            json_schema=common_form, python_schema=checked
        ),
    )


@dataclass(frozen=True, slots=True)
class _MoneyRule:
    """A pydantic annotation: a JSON string of a plain decimal, as `Decimal`, >= 0 or > 0."""

    positive: bool

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        plain: list[core_schema.CoreSchema] = [
            core_schema.str_schema(strict=True, pattern=_PLAIN_MONEY_PATTERN)
        ]
        if self.positive:
            plain.append(core_schema.str_schema(pattern="[1-9]"))  # not zero
        plain.append(core_schema.no_info_plain_validator_function(Decimal))
        return _wire_fast_path(self._validate, core_schema.chain_schema(plain))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        bound = "> 0" if self.positive else ">= 0"
        return {
            "type": "string",
            "pattern": MONEY_PATTERN,
            "maxLength": 20,
            "description": f"a decimal amount {bound}, as a string; "
            "at most 12 digits before the point and 6 after",
        }

    def _validate(self, value: object) -> Decimal:
        # A Decimal never comes off the wire: it is the engine building an event in Python.
        if type(value) is Decimal and value.is_finite():
            value = f"{value:f}"  # held to the wire's rules
        if type(value) is not str:
            raise PydanticCustomError("money_format", _MONEY_FORMAT)
        if _MONEY_RE.fullmatch(value) is not None:
            amount = Decimal(value)
        elif _ANY_MONEY_RE.fullmatch(value) is not None:
            raise PydanticCustomError("money_digits", MONEY_DIGITS)
        else:
            raise PydanticCustomError("money_format", _MONEY_FORMAT)
        if amount.is_signed():
            if not amount.is_zero():
                raise PydanticCustomError("money_negative", "must not be negative")
            amount = amount.copy_abs()
        if self.positive and amount.is_zero():
            raise PydanticCustomError("money_zero", "must be greater than 0")
        return amount


class _InstantRule:
    """A pydantic annotation: an RFC 3339 string with an offset, as an aware UTC `datetime`."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        text = core_schema.str_schema(strict=True, pattern=_COMMON_INSTANT_PATTERN)
        return _wire_fast_path(
            cls._validate,
            core_schema.chain_schema(
                [text, core_schema.no_info_plain_validator_function(cls._from_common_text)]
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "format": "date-time",
            "pattern": INSTANT_PATTERN,
            "description": f"an instant from {_INSTANT_RANGE}, as an RFC 3339 string",
        }

    @staticmethod
    def _validate(value: object) -> datetime:
        # A datetime never comes off the wire: it is the engine building an event in Python.
        if isinstance(value, datetime) and value.utcoffset() is not None:
            return _InstantRule._bounded(_in_utc(value))
        if type(value) is not str or _INSTANT_RE.fullmatch(value) is None:
            raise PydanticCustomError("instant_format", _INSTANT_FORMAT)
        return _InstantRule._from_text(value)

    @staticmethod
    def _from_text(value: str) -> datetime:
        """`value`, which matches INSTANT_PATTERN, as a UTC instant within bounds."""
        try:
            # fromisoformat takes "Z" but not "z"; digits are unaffected by upper().
            instant = datetime.fromisoformat(value.upper()).astimezone(UTC)
        except (ValueError, OverflowError):  # no such day or hour; an offset past year 1 or 9999
            raise _not_an_instant() from None
        return _InstantRule._bounded(instant)

    @staticmethod
    def _from_common_text(value: str) -> datetime:
        """`value`, in the common form, as `_from_text` reads it; ValueError for any fault.

        `astimezone` is slow (two method calls, three new datetimes; a sixth of a line's
        decoding). Read as UTC wall time, the instant is that time less the offset, whose
        timedelta is looked up once per spelling.
        """
        try:
            if value[-1] == "Z":
                instant = datetime.fromisoformat(value)
            else:
                offset = _OFFSETS.get(value[-6:])
                if offset is None:
                    offset = _offset(value[-6:])
                instant = datetime.fromisoformat(value[:-6] + "Z") - offset
        except OverflowError:  # past year 1 or 9999: the lax pass says so
            raise ValueError(value) from None
        if FIRST_INSTANT <= instant <= LAST_INSTANT:
            return instant
        raise ValueError(value)

    @staticmethod
    def _bounded(instant: datetime) -> datetime:
        if not FIRST_INSTANT <= instant <= LAST_INSTANT:
            raise PydanticCustomError("instant_bounds", f"must be from {_INSTANT_RANGE}")
        return instant


_INSTANT_RANGE: Final = "1970-01-01T00:00:00Z to 2999-12-31T23:59:59Z"


# How the common form of an instant (INSTANT_PATTERN, upper case) nearly always comes.
_COMMON_INSTANT_PATTERN: Final = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
)
# "+01:00" -> its timedelta; "[+-]HH:MM" bounds it to 20,000 entries, a handful in practice.
_OFFSETS: Final[dict[str, timedelta]] = {}


def _offset(text: str) -> timedelta:
    """The UTC offset `text` names, as fromisoformat reads it (ValueError if it does not)."""
    offset = datetime.fromisoformat(f"2000-01-01T00:00:00{text}").utcoffset()
    assert offset is not None
    _OFFSETS[text] = offset
    return offset


def _in_utc(instant: datetime) -> datetime:
    try:
        return instant.astimezone(UTC)
    except OverflowError:  # an offset pushes it past year 1 or 9999
        raise _not_an_instant() from None


def _not_an_instant() -> PydanticCustomError:
    return PydanticCustomError(
        "instant_range", "is not a real instant (check the date, time and offset)"
    )


class _DateRule:
    """A pydantic annotation: a `YYYY-MM-DD` string, as a `date`."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        text = core_schema.str_schema(strict=True, pattern=DATE_PATTERN)
        return _wire_fast_path(
            cls._validate,
            core_schema.chain_schema(
                [text, core_schema.no_info_plain_validator_function(cls._from_text)]
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "format": "date",
            "pattern": DATE_PATTERN,
            "description": f"a date from {_DATE_RANGE}",
        }

    @staticmethod
    def _validate(value: object) -> date:
        if type(value) is date:  # built in Python, not off the wire
            return _DateRule._bounded(value)
        if type(value) is not str or _DATE_RE.fullmatch(value) is None:
            raise PydanticCustomError("date_format", _DATE_FORMAT)
        return _DateRule._from_text(value)

    @staticmethod
    def _from_text(value: str) -> date:
        """`value`, which matches DATE_PATTERN, as a date within bounds."""
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError("date_range", "is not a real calendar date") from None
        return _DateRule._bounded(day)

    @staticmethod
    def _bounded(day: date) -> date:
        if not FIRST_BIRTH_DATE <= day <= LAST_BIRTH_DATE:
            raise PydanticCustomError("date_bounds", f"must be from {_DATE_RANGE}")
        return day


_DATE_RANGE: Final = "1900-01-01 to 2999-12-31"


@dataclass(frozen=True, slots=True)
class _NullIsDefault:
    """A pydantic annotation: JSON null means the field's default (null is absent)."""

    default: Any

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        value = handler(source)
        return core_schema.lax_or_strict_schema(
            lax_schema=core_schema.no_info_after_validator_function(
                self._fill, core_schema.nullable_schema(value)
            ),
            strict_schema=value,  # null is rare: the lax pass fills it in
        )

    def _fill(self, value: Any) -> Any:
        return self.default if value is None else value


class _NoNul:
    """A pydantic annotation for JSON Schema only: the string holds no U+0000.

    `decode` enforces it (see `_nul_in`): a pattern per string field would cost a
    regex run on each, and a NUL can only come off the wire as the escape \\u0000.
    """

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["pattern"] = NO_NUL_PATTERN
        return json_schema


# Lengths are native pydantic-core constraints: checked in Rust with the type itself.
Id = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=128), _NoNul]
NonEmptyStr = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=TEXT_LENGTH_MAX), _NoNul
]
Text = Annotated[str, StringConstraints(strict=True, max_length=TEXT_LENGTH_MAX), _NoNul]
Money = Annotated[Decimal, _MoneyRule(positive=False)]
PositiveMoney = Annotated[Decimal, _MoneyRule(positive=True)]
Instant = Annotated[datetime, _InstantRule]
CalendarDate = Annotated[date, _DateRule]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Item(_Wire):
    sku: Text
    category: Text
    quantity: Annotated[int, Strict(), Ge(1), Le(QUANTITY_MAX)]
    unit_price: Money


class _Common(_Wire):
    event_id: Id
    occurred_at: Instant
    channel: Annotated[Channel, _NullIsDefault("web")] = "web"


class Signup(_Common):
    type: Literal["signup"]
    customer_id: Id
    email: NonEmptyStr
    name: NonEmptyStr | None = None
    phone: NonEmptyStr | None = None
    birth_date: CalendarDate | None = None
    referred_by: Id | None = None
    newsletter: Annotated[bool, Strict(), _NullIsDefault(False)] = False


class Purchase(_Common):
    type: Literal["purchase"]
    customer_id: Id
    order_id: Id
    currency: Text
    total: Money
    items: Annotated[tuple[Item, ...], MaxLen(ITEMS_MAX), _NullIsDefault(())] = ()


class Return(_Common):
    type: Literal["return"]
    customer_id: Id
    order_id: Id
    amount: PositiveMoney


class Referral(_Common):
    type: Literal["referral"]
    customer_id: Id
    referrer_id: Id


class Redemption(_Common):
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"properties": {"reward_id": {"type": "string"}}, "required": ["reward_id"]},
                {"properties": {"points": {"type": "integer"}}, "required": ["points"]},
            ]
        }
    )

    type: Literal["redemption"]
    customer_id: Id
    redemption_id: Id
    reward_id: Id | None = None
    points: Annotated[int, Strict(), Gt(0), Le(POINTS_MAX)] | None = None

    @model_validator(mode="after")
    def _one_of_reward_or_points(self) -> Redemption:
        if (self.reward_id is None) == (self.points is None):
            raise PydanticCustomError(
                "redemption_target", "give exactly one of reward_id and points"
            )
        return self


class Action(_Common):
    type: Literal["action"]
    customer_id: Id
    action: NonEmptyStr


class Adjustment(_Common):
    """A support agent's correction: points credited (> 0) or taken (< 0), with why."""

    type: Literal["adjustment"]
    customer_id: Id
    points: Annotated[int, Strict(), Ge(-POINTS_MAX), Le(POINTS_MAX)]
    reason: Annotated[
        str, StringConstraints(strict=True, min_length=1, max_length=REASON_LENGTH_MAX), _NoNul
    ]

    @field_validator("points")
    @classmethod
    def _not_zero(cls, points: int) -> int:
        if points == 0:
            raise PydanticCustomError("adjustment_zero", "must not be 0 (negative takes away)")
        return points


class Transfer(_Common):
    """Points `customer_id` gives to `to_customer_id`, oldest-to-expire first."""

    type: Literal["transfer"]
    customer_id: Id
    to_customer_id: Id
    points: Annotated[int, Strict(), Gt(0), Le(POINTS_MAX)]


class Membership(_Common):
    """A paid plan bought or renewed; `paid` must be the plan's price for the customer."""

    type: Literal["membership"]
    customer_id: Id
    plan: NonEmptyStr
    paid: Money


class Tick(_Common):
    type: Literal["tick"]


Event = Annotated[
    Signup
    | Purchase
    | Return
    | Referral
    | Redemption
    | Action
    | Adjustment
    | Transfer
    | Membership
    | Tick,
    Field(discriminator="type"),
]
EVENT_TYPES: Final[tuple[str, ...]] = (
    "signup",
    "purchase",
    "return",
    "referral",
    "redemption",
    "action",
    "adjustment",
    "transfer",
    "membership",
    "tick",
)
EVENT_CLASSES: Final[dict[str, type[BaseModel]]] = {
    "signup": Signup,
    "purchase": Purchase,
    "return": Return,
    "referral": Referral,
    "redemption": Redemption,
    "action": Action,
    "adjustment": Adjustment,
    "transfer": Transfer,
    "membership": Membership,
    "tick": Tick,
}

# Field names repeat on every line and are worth caching; values rarely repeat.
_EVENT: Final[TypeAdapter[Event]] = TypeAdapter(Event, config=ConfigDict(cache_strings="keys"))
_validate_json: Final = _EVENT.validator.validate_json


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why a raw input is not an event: short, specific, lowercase; it goes to the dead letters."""

    reason: str


def decode(raw: bytes | str) -> Event | Invalid:
    """Decode one JSON Lines input into an event, or say why it is invalid. Never raises."""
    if isinstance(raw, str):
        try:
            raw = raw.encode()
        except UnicodeEncodeError as e:
            return Invalid(f"not utf-8: {e.reason} at character {e.start}")
    if raw.startswith(_BOM):  # as JSON readers do: a BOM is no part of the text
        raw = raw[3:]
    if raw.endswith(b"\n"):
        # A line's own terminator: without it, a cut-off line reads as "EOF while parsing".
        raw = raw.rstrip(b"\r\n")
    if len(raw) > MAX_LINE_BYTES:
        return Invalid(f"too large: {len(raw)} bytes, the limit is {MAX_LINE_BYTES}")
    try:
        # Strict takes the common forms, checked natively; the lax pass is for the rest.
        event: Event = _validate_json(raw, strict=True)
    except ValidationError:
        try:
            event = _validate_json(raw)
        except ValidationError as e:
            return Invalid(_reason(e))
    # JSON has no raw control characters in strings: a NUL can only be the escape \u0000.
    # A backslash is rare, and looking for one byte is a tenth of the cost of six.
    if _BACKSLASH in raw and _NUL_ESCAPE in raw:
        where = _nul_in(event, event.type)
        if where is not None:
            return Invalid(f"{where}: must not contain U+0000")
    return event


_BACKSLASH: Final = ord("\\")
_NUL_ESCAPE: Final = b"\\u0000"


def _nul_in(model: BaseModel, path: str) -> str | None:
    """The path of the first string of `model` (items included) that holds a U+0000."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if type(value) is str:
            if "\x00" in value:
                return f"{path}.{name}"
        elif type(value) is tuple:
            for index, item in enumerate(value):
                found = _nul_in(item, f"{path}.{name}[{index}]")
                if found is not None:
                    return found
    return None


def json_schemas() -> dict[str, dict[str, Any]]:
    """The wire contract as JSON Schema: one file per event type, and `event.json` for any event."""
    schemas = {
        f"{name}.json": TypeAdapter(cls).json_schema(mode="validation")
        for name, cls in EVENT_CLASSES.items()
    }
    schemas["event.json"] = _EVENT.json_schema(mode="validation")
    return schemas


def _reason(error: ValidationError) -> str:
    errors = error.errors(include_url=False)
    first = errors[0]
    kind = first["type"]
    ctx = first.get("ctx") or {}
    if kind == "json_invalid":
        return f"not json: {ctx.get('error', first['msg'])}"
    if kind == "dict_type" and not first["loc"]:
        return "not a json object"
    if kind == "union_tag_not_found":
        return "missing field type"
    if kind == "union_tag_invalid":
        return _bad_type(first["input"])
    reason = _field_reason(first)
    if len(errors) > 1:
        reason += f" (and {len(errors) - 1} more)"
    return reason


def _bad_type(event: Any) -> str:
    tag = event.get("type") if isinstance(event, dict) else None
    if tag is None:
        return "missing field type"
    if isinstance(tag, str):
        return f"unknown type {_quote(tag)}; use one of {', '.join(EVENT_TYPES)}"
    return f"type: must be a string, one of {', '.join(EVENT_TYPES)}"


_MESSAGES: Final[dict[str, str]] = {
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters",
    "too_long": "must have at most {max_length} entries",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "finite_number": "must be an integer",
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "bool_type": "must be true or false",
    "tuple_type": "must be a list",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "literal_error": "must be one of {expected}",
}


def _field_reason(error: Any) -> str:
    loc: tuple[int | str, ...] = error["loc"]
    kind = error["type"]
    if not loc:  # the union itself refused the input, for a reason not named above
        return _lower_first(str(error["msg"]))
    event_type, path = str(loc[0]), _path(loc[1:])
    if kind == "missing" or (error["input"] is None and loc and isinstance(loc[-1], str)):
        return f"missing field {path}"
    template = _MESSAGES.get(kind)
    if template is None:
        message = _lower_first(str(error["msg"]))
    else:
        message = template.format(**(error.get("ctx") or {}))
    where = f"{event_type}.{path}" if path else event_type
    return f"{where}: {message}"


def _path(loc: tuple[int | str, ...]) -> str:
    """("items", 0, "unit_price") -> "items[0].unit_price": JSON paths, indexes from 0."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _quote(text: str, limit: int = 40) -> str:
    """`text` as a short JSON string: quoted, escaped onto one line, cut after `limit` chars."""
    return json.dumps(text if len(text) <= limit else text[:limit] + "...", ensure_ascii=False)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
