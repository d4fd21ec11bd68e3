"""Customer notices as plain text, from one Jinja2 template per notice kind.

The wording lives in `templates/<kind>.txt` (package data) so it can change without code; each
template's first line is `Subject: ...`, the rest is the body. Dates, deadlines, amounts and
links are formatted here, once, so templates only decide what to say.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from pydantic import BaseModel, ConfigDict, Field, field_validator

from activities.contracts import Notice
from domain.contract import minor_units

TEMPLATES = Path(__file__).parent / "templates"

_LINK_FIELDS = {"order_id": "A-1", "order_number": "1001"}


class TemplateMissing(LookupError):
    """No template for a notice kind: the notice cannot be sent until one is written."""


class Storefront(BaseModel):
    """What the messages say about the shop, and where the customer answers FTC notices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shop_name: Annotated[str, Field(min_length=1)] = "Our shop"
    support_email: str | None = None
    consent_url: str | None = None
    """Where the customer agrees to a delay, with `{order_id}` / `{order_number}` fields,
    e.g. "https://shop.example/orders/{order_number}/consent"."""
    cancel_url: str | None = None
    date_format: str = "%A %d %B %Y"
    timezone: str = "UTC"
    """The zone deadlines (respond-by) are shown in."""

    @field_validator("consent_url", "cancel_url")
    @classmethod
    def _known_fields(cls, url: str | None) -> str | None:
        if url is not None:
            try:
                url.format(**_LINK_FIELDS)
            except (KeyError, IndexError, ValueError) as err:
                raise ValueError(
                    f"link {url!r}: only {{order_id}} and {{order_number}} may be used ({err!r})"
                ) from err
        return url

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown time zone {zone!r}") from err
        return zone

    def link(self, url: str | None, notice: Notice) -> str | None:
        """The link for this order, its ids URL-quoted."""
        if url is None:
            return None
        return url.format(
            order_id=quote(notice.order_id, safe=""),
            order_number=quote(notice.order_number, safe=""),
        )

    def day(self, day: dt.date | None) -> str | None:
        return None if day is None else day.strftime(self.date_format)

    def deadline(self, instant: dt.datetime | None) -> str | None:
        """A respond-by instant; midnight reads as the end of the day before."""
        if instant is None:
            return None
        local = instant.astimezone(ZoneInfo(self.timezone))
        if local.time() == dt.time(0):
            return f"the end of {self.day(local.date() - dt.timedelta(days=1))} ({local:%Z})"
        return f"{self.day(local.date())} at {local:%H:%M %Z}"


class RenderedNotice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: str
    text: str


def format_amount(amount: Decimal, currency: str | None) -> str:
    """`1,234.50 USD`: the currency's own number of decimals, rounded half up."""
    digits = minor_units(currency)
    rounded = amount.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    number = f"{rounded:,.{digits}f}"
    return f"{number} {currency}" if currency else number


@lru_cache(maxsize=8)
def _environment(directory: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # plain text: nothing to escape, and escaping would garble it
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(
    notice: Notice, storefront: Storefront, *, templates: Path | None = None
) -> RenderedNotice:
    """The notice's subject and text. `templates`: a directory overriding the shipped ones."""
    directory = templates or TEMPLATES
    kind = str(notice.kind)
    try:
        template = _environment(directory).get_template(f"{kind}.txt")
    except jinja2.TemplateNotFound as err:
        raise TemplateMissing(
            f"no template for notice kind {kind!r}: expected {directory / f'{kind}.txt'}"
        ) from err
    first, _, body = template.render(_context(notice, storefront)).partition("\n")
    if not first.startswith("Subject:"):
        raise ValueError(f"template {kind}.txt must start with a 'Subject: ...' line")
    subject = " ".join(first.removeprefix("Subject:").split())  # one line, whatever the ids
    lines = (line.rstrip() for line in body.strip("\n").splitlines())
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))  # omitted parts leave no gaps
    return RenderedNotice(subject=subject, text=text + "\n")


def _context(notice: Notice, shop: Storefront) -> dict[str, Any]:
    amount = None if notice.amount is None else format_amount(notice.amount, notice.currency)
    return {
        "notice": notice,
        "shop": shop,
        "order_id": notice.order_id,
        "order_number": notice.order_number,
        "split_number": notice.split_number,
        "items": notice.items,
        "expected_ship_date": shop.day(notice.expected_ship_date),
        "revised_ship_date": shop.day(notice.revised_ship_date),
        "respond_by": shop.deadline(notice.respond_by),
        "amount": amount,
        "money_back": amount if notice.amount else None,
        "consent_url": shop.link(shop.consent_url, notice),
        "cancel_url": shop.link(shop.cancel_url, notice),
        "reason": notice.reason,
        "preorder_release": shop.day(notice.preorder_release),
        "carrier": notice.carrier,
        "tracking_number": notice.tracking_number,
        "estimated_delivery": shop.day(notice.estimated_delivery),
    }
