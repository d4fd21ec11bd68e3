"""The building blocks of every public payload: ids, money, whole numbers, times, currencies.

The contract is exact where a payload enters the service: money is a decimal string, counts
are JSON integers, times and dates are RFC 3339 strings, currencies are ISO 4217 codes with
their minor units. A payload accepted before a rule was tightened must still decode when its
workflow replays months later, so the converter falls back to `LENIENT` validation (the old
rules) and records what the exact rules refused (`contract_problems`): a workflow's start, an
update's validator and the feed refuse it; a replay carries on.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Hashable, Iterable
from decimal import Decimal
from functools import cache
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

LENIENT = "lenient"
"""The validation context's key that relaxes the exact rules to those of earlier releases
(for payloads already in a workflow's history); only the converter sets it."""


def lenient(info: ValidationInfo) -> bool:
    context = info.context
    return isinstance(context, dict) and bool(context.get(LENIENT))


class Contract(BaseModel):
    """Base of every public model: unknown fields are an error, not silently dropped. Field
    docstrings are the JSON Schema's descriptions; a result's schema requires every field (all
    are sent, defaults included)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        json_schema_serialization_defaults_required=True,
    )

    _contract_problems: str | None = PrivateAttr(default=None)


class Message(Contract):
    """Base of the messages customer service sends an order (cancel, consent, priority, check)
    as a signal or an update. One the contract refuses is not dropped by the converter: it
    arrives as an empty instance whose `contract_problems` say why, so the workflow can record
    the refusal (a signal) or answer it (an update's validator)."""


def contract_problems(model: BaseModel) -> str | None:
    """What the exact contract refused in a payload the converter took leniently (`field:
    why; ...`), or None: the payload met the contract."""
    problems = getattr(model, "_contract_problems", None)
    return problems if isinstance(problems, str) else None


def mark_lenient(model: Any, problems: str) -> None:
    """Record on a leniently decoded model what the exact contract refused."""
    if isinstance(model, Contract):
        model._contract_problems = problems


Identifier = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S(.*\S)?$")]
"""A non-empty id with no leading or trailing blanks (ids end up in workflow ids and keys)."""

MONEY_PATTERN = r"^[0-9]{1,14}(\.[0-9]{1,4})?$"
"""A non-negative decimal string: digits, then at most four decimals (`"10.00"`, `"5"`)."""


def _decimal_text(value: object, info: ValidationInfo) -> object:
    if isinstance(value, float):
        raise PydanticCustomError(
            "money_type", 'money must be a decimal string such as "10.00", not a JSON number'
        )
    json_number = isinstance(value, int) and not isinstance(value, bool) and info.mode == "json"
    if json_number and not lenient(info):  # an int in Python code is exact: let it be
        raise PydanticCustomError(
            "money_type", 'money must be a decimal string such as "10.00", not a JSON number'
        )
    if isinstance(value, str) and value.startswith("-") and not lenient(info):
        raise PydanticCustomError(
            "money_negative", "money must not be negative, not '{value}'", {"value": value[:40]}
        )
    if isinstance(value, str) and not lenient(info) and not re.fullmatch(MONEY_PATTERN, value):
        raise PydanticCustomError(
            "money_format",
            'money must be a decimal string of digits with at most 4 decimals, such as "10.00" '
            "(no sign, exponent or blanks), not '{value}'",
            {"value": value[:40]},
        )
    return value


Money = Annotated[
    Decimal,
    BeforeValidator(_decimal_text),
    Field(ge=0, max_digits=18, decimal_places=4),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": MONEY_PATTERN,
            "description": 'A non-negative decimal string such as "10.00"; a JSON number is '
            "refused (binary floats cannot hold cents exactly).",
        }
    ),
]
"""A non-negative amount; in JSON a decimal string such as "10.00" (a number is refused)."""


def _json_integer(value: object, info: ValidationInfo) -> object:
    if (isinstance(value, bool) or not isinstance(value, int)) and not lenient(info):
        raise PydanticCustomError(
            "int_type",
            "must be a JSON integer such as 2, not {value}",
            {"value": json.dumps(value, default=str)[:40]},
        )
    return value


JSON_INTEGER = BeforeValidator(_json_integer)
"""Put in a count's `Annotated[int, ...]`: a JSON integer, not `"2"`, `2.0` or `true`."""


def _json_boolean(value: object, info: ValidationInfo) -> object:
    if not isinstance(value, bool) and not lenient(info):
        raise PydanticCustomError(
            "bool_type",
            "must be a JSON boolean, true or false, not {value}",
            {"value": json.dumps(value, default=str)[:40]},
        )
    return value


Flag = Annotated[bool, BeforeValidator(_json_boolean)]
"""A JSON boolean: pydantic alone also takes `"yes"`, `"off"`, `1` or `0`."""
Count = Annotated[int, JSON_INTEGER, Field(ge=0)]
"""A count that may be 0, as a JSON integer."""
PositiveCount = Annotated[int, JSON_INTEGER, Field(gt=0)]
"""A count of at least 1, as a JSON integer."""

DATE_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
"""An RFC 3339 full-date (`2026-11-20`); the calendar (no 30 February) is the format's check."""
_HOUR = "([01][0-9]|2[0-3])"
INSTANT_PATTERN = (
    f"{DATE_PATTERN.removesuffix('$')}[Tt]{_HOUR}:[0-5][0-9]:[0-5][0-9]"
    rf"(\.[0-9]+)?([Zz]|[+-]{_HOUR}:[0-5][0-9])$"
)
"""An RFC 3339 date-time with its offset (`2026-11-20T10:00:00Z`, `...T11:00:00.5+01:00`).
Patterns stay in the syntax ECMA-262, Python and Go's RE2 share (no look-around)."""

INSTANT_SCHEMA: dict[str, Any] = {
    "type": "string",
    "format": "date-time",
    "pattern": INSTANT_PATTERN,
    "description": 'An RFC 3339 date-time with its offset, such as "2026-11-20T10:00:00Z"; a '
    "JSON number (a unix timestamp) is refused.",
}
DAY_SCHEMA: dict[str, Any] = {
    "type": "string",
    "format": "date",
    "pattern": DATE_PATTERN,
    "description": 'A calendar date such as "2026-11-20" (RFC 3339 full-date).',
}
"""The JSON Schemas of `Instant` and `Day`: also what `backorder schema` says of any date-time
or date field."""


def _text_matching(error: str, what: str, pattern: str) -> BeforeValidator:
    """A before-validator that lets only a string matching `pattern` reach pydantic's parser,
    which alone also takes a JSON number (a unix timestamp), `"1700000000"`, a space for `T`
    or no seconds: forms other systems' validators refuse. Python values (a `date`) and the
    lenient context pass untouched."""

    def check(value: object, info: ValidationInfo) -> object:
        if isinstance(value, str) and re.fullmatch(pattern, value):
            return value
        if isinstance(value, dt.date) or lenient(info):
            return value
        raise PydanticCustomError(
            error,
            f"must be {what}, not {{value}}",
            {"value": json.dumps(value, default=str)[:40]},
        )

    return BeforeValidator(check)


Instant = Annotated[
    AwareDatetime,
    _text_matching(
        "datetime_format",
        "an RFC 3339 date-time string with its timezone (Z or an offset), such as "
        '"2026-11-20T10:00:00Z"',
        INSTANT_PATTERN,
    ),
    WithJsonSchema(INSTANT_SCHEMA),
]
"""A moment with its time zone; in JSON an RFC 3339 string (a unix timestamp is refused)."""

Day = Annotated[
    dt.date,
    _text_matching("date_format", 'a date string such as "2026-11-20"', DATE_PATTERN),
    WithJsonSchema(DAY_SCHEMA),
]
"""A calendar date; in JSON `YYYY-MM-DD` (not a timestamp, nor a date-time at midnight)."""


@cache
def iso_currencies() -> dict[str, int]:
    """ISO 4217 codes of the currencies legal tender somewhere today, with their minor units
    (USD 2, JPY 0, KWD 3), from Babel's CLDR tables."""
    from babel.core import get_global
    from babel.numbers import get_currency_precision

    codes = {
        code
        for periods in get_global("territory_currencies").values()
        for code, _start, end, tender in periods
        if end is None and tender
    }
    return {code: get_currency_precision(code) for code in sorted(codes)}


def minor_units(currency: str | None) -> int:
    """The currency's decimals (USD 2, JPY 0, KWD 3); 2 for a code the table lacks (an order
    an earlier release accepted)."""
    return iso_currencies().get(currency or "", 2)


def _iso_currency(code: str, info: ValidationInfo) -> str:
    if code not in iso_currencies() and not lenient(info):
        raise PydanticCustomError(
            "currency_unknown",
            "'{code}' is not an ISO 4217 currency code in use (such as USD, EUR, JPY)",
            {"code": code[:10]},
        )
    return code


Currency = Annotated[
    str,
    Field(pattern=r"^[A-Z]{3}$"),
    AfterValidator(_iso_currency),
    WithJsonSchema(
        {
            "type": "string",
            "enum": sorted(iso_currencies()),
            "description": "An ISO 4217 currency code in use; amounts carry at most its minor "
            "units (USD 2 decimals, JPY none, KWD 3).",
        }
    ),
]


def minor_units_problem(amount: Decimal, currency: str) -> str | None:
    """Why `amount` has more decimals than `currency` has minor units, or None."""
    digits = iso_currencies().get(currency)
    exponent = amount.normalize().as_tuple().exponent
    if digits is None or not isinstance(exponent, int) or -exponent <= digits:
        return None
    allowed = "no minor unit" if digits == 0 else f"{digits} decimals at most"
    return f"{amount} has more decimals than {currency} allows ({allowed})"


def faults(err: ValidationError) -> list[dict[str, str]]:
    """Each bad field of `err`: its dotted path (empty: a whole-model rule), pydantic's error
    type and the message without pydantic's `Value error, ` prefix."""
    return [
        {
            "field": ".".join(str(p) for p in e["loc"]),
            "problem": e["type"],
            "message": e["msg"].removeprefix("Value error, "),
        }
        for e in err.errors()
    ]


def repeated(keys: Iterable[Hashable]) -> list[str]:
    """The keys that occur more than once, sorted (for messages that name them)."""
    return sorted(str(k) for k, n in Counter(keys).items() if n > 1)


def require_unique(what: str, keys: Iterable[Hashable], shown: int | None = None) -> None:
    """Raise `<what> must be unique; repeated: ...` naming the repeats (the first `shown`)."""
    twice = repeated(keys)
    if twice:
        raise ValueError(f"{what} must be unique; repeated: {', '.join(twice[:shown])}")
