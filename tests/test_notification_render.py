"""Every notice kind renders to a clear, complete customer message from its template."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from activities.contracts import Notice, NoticeItem, NoticeKind
from notifications.render import (
    TEMPLATES,
    RenderedNotice,
    Storefront,
    TemplateMissing,
    format_amount,
    render,
)

SHOP = Storefront(
    shop_name="Acme Outdoor",
    support_email="help@acme.example",
    consent_url="https://acme.example/orders/{order_number}/consent?ref={order_id}",
    cancel_url="https://acme.example/orders/{order_number}/cancel",
)
BARE = Storefront()
ITEMS = (NoticeItem(sku="TENT-2P", quantity=2), NoticeItem(sku="STOVE-XL", quantity=1))
ITEM_LINES = ("  - TENT-2P x 2", "  - STOVE-XL x 1")
QUOTE = "Please quote your order number 1001 (order reference A-1)"


def notice(kind: NoticeKind, **details: Any) -> Notice:
    return Notice.model_validate(
        {
            "key": f"backorder-A-1/{kind.value}",
            "kind": kind,
            "order_id": "A-1",
            "order_number": "1001",
            "email": "ada@example.com",
            "items": ITEMS,
            "currency": "USD",
            **details,
        }
    )


def assert_common(rendered: RenderedNotice, shop: Storefront = SHOP) -> None:
    assert "1001" in rendered.subject
    assert "\n" not in rendered.subject
    for line in ITEM_LINES:
        assert line in rendered.text.splitlines()
    assert QUOTE in rendered.text
    assert rendered.text.rstrip().endswith(shop.shop_name)
    assert "None" not in rendered.text
    assert "\n\n\n" not in rendered.text
    assert rendered.text.endswith("\n") and not rendered.text.endswith("\n\n")


def test_every_kind_has_a_template() -> None:
    for kind in NoticeKind:
        assert (TEMPLATES / f"{kind.value}.txt").is_file(), kind
        rendered = render(notice(kind), BARE)
        assert rendered.subject and rendered.text


def test_a_missing_template_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "shipped.txt").write_text("Subject: Sent {{ order_number }}\n\nOn its way.\n")
    assert render(notice(NoticeKind.SHIPPED), SHOP, templates=tmp_path) == RenderedNotice(
        subject="Sent 1001", text="On its way.\n"
    )
    with pytest.raises(TemplateMissing, match=r"no template for notice kind 'refunded'"):
        render(notice(NoticeKind.REFUNDED), SHOP, templates=tmp_path)


def test_a_template_without_subject_line_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "shipped.txt").write_text("On its way.\n")
    with pytest.raises(ValueError, match="Subject"):
        render(notice(NoticeKind.SHIPPED), SHOP, templates=tmp_path)


def test_on_backorder() -> None:
    r = render(notice(NoticeKind.ON_BACKORDER, expected_ship_date=dt.date(2025, 5, 5)), SHOP)
    assert r.subject == "Your order 1001: some items are on backorder"
    assert_common(r)
    assert "We expect to ship them by Monday 05 May 2025." in r.text
    assert "https://acme.example/orders/1001/cancel" in r.text
    assert "Customer service: help@acme.example" in r.text


def test_on_backorder_without_date_or_links() -> None:
    r = render(notice(NoticeKind.ON_BACKORDER), BARE)
    assert_common(r, BARE)
    assert "We do not have a shipping date for them yet." in r.text
    assert "http" not in r.text
    assert "Customer service:" not in r.text
    assert "contact customer service to cancel them" in r.text


def test_still_waiting() -> None:
    r = render(notice(NoticeKind.STILL_WAITING, expected_ship_date=dt.date(2025, 6, 30)), SHOP)
    assert r.subject == "Your order 1001: still waiting for backordered items"
    assert_common(r)
    assert "We now expect to ship them by Monday 30 June 2025." in r.text


def test_ftc_delay_option_where_silence_is_consent() -> None:
    r = render(
        notice(
            NoticeKind.FTC_DELAY_OPTION,
            expected_ship_date=dt.date(2025, 5, 20),
            revised_ship_date=dt.date(2025, 6, 2),
        ),
        SHOP,
    )
    assert r.subject == "Delay to your order 1001: your options"
    assert_common(r)
    assert "cannot ship the following items from your order 1001 by the date we promised" in r.text
    assert "Our revised shipping date is Monday 02 June 2025." in r.text
    assert "   Agree: https://acme.example/orders/1001/consent?ref=A-1" in r.text
    assert "   Cancel: https://acme.example/orders/1001/cancel" in r.text
    assert "prompt refund of all the money you paid for them" in r.text
    assert (
        "If we do not hear from you, we will take it that you agree to the delay and ship the "
        "items by Monday 02 June 2025."
    ) in r.text
    assert "cancel them at any time before they ship" in r.text


def test_ftc_delay_option_where_silence_cancels() -> None:
    """A delay beyond 30 days (or of unknown length): silence is not consent."""
    r = render(
        notice(
            NoticeKind.FTC_DELAY_OPTION,
            respond_by=dt.datetime(2025, 7, 1, tzinfo=dt.UTC),
        ),
        SHOP,
    )
    assert_common(r)
    assert "We do not know yet when we will be able to ship them." in r.text
    assert (
        "If we do not hear from you by the end of Monday 30 June 2025 (UTC), we will cancel these "
        "items and promptly refund all the money you paid for them."
    ) in r.text
    assert "agree to the delay and ship" not in r.text


def test_ftc_delay_option_without_links() -> None:
    r = render(notice(NoticeKind.FTC_DELAY_OPTION, revised_ship_date=dt.date(2025, 6, 2)), BARE)
    assert_common(r, BARE)
    assert "http" not in r.text
    assert "To agree, reply to this message or contact customer service." in r.text
    assert "To cancel, reply to this message or contact customer service." in r.text
    assert QUOTE in r.text


def test_ftc_renewed_notice() -> None:
    r = render(
        notice(
            NoticeKind.FTC_RENEWED_NOTICE,
            expected_ship_date=dt.date(2025, 7, 10),
            revised_ship_date=dt.date(2025, 7, 14),
            respond_by=dt.datetime(2025, 7, 3, tzinfo=dt.UTC),
        ),
        SHOP,
    )
    assert r.subject == "Further delay to your order 1001: your consent is needed"
    assert_common(r)
    assert "still cannot ship the following items" in r.text
    assert "Our new revised shipping date is Monday 14 July 2025." in r.text
    assert "Agree: https://acme.example/orders/1001/consent?ref=A-1" in r.text
    assert "Cancel: https://acme.example/orders/1001/cancel" in r.text
    assert (
        "Unless you agree to this further delay by the end of Wednesday 02 July 2025 (UTC), we "
        "will cancel these items and promptly refund all the money you paid for them."
    ) in r.text
    assert "If we do not hear from you, the items are cancelled." in r.text


def test_deadlines_in_the_shop_zone_and_format() -> None:
    shop = Storefront(timezone="America/New_York", date_format="%d/%m/%Y")
    r = render(
        notice(
            NoticeKind.FTC_RENEWED_NOTICE,
            revised_ship_date=dt.date(2025, 7, 14),
            respond_by=dt.datetime(2025, 7, 3, 14, 30, tzinfo=dt.UTC),
        ),
        shop,
    )
    assert "new revised shipping date is 14/07/2025." in r.text
    assert "by 03/07/2025 at 10:30 EDT," in r.text


def test_shipped() -> None:
    r = render(notice(NoticeKind.SHIPPED), SHOP)
    assert r.subject == "Your order 1001 has shipped"
    assert_common(r)
    assert "All the items of your order have now shipped." in r.text


def test_partly_shipped() -> None:
    r = render(notice(NoticeKind.PARTLY_SHIPPED), SHOP)
    assert r.subject == "Part of your order 1001 has shipped"
    assert_common(r)
    assert "The remaining items will follow as soon as they are in stock." in r.text
    dated = render(notice(NoticeKind.PARTLY_SHIPPED, expected_ship_date=dt.date(2025, 5, 5)), SHOP)
    assert "we expect to ship them by Monday 05 May 2025." in dated.text


def test_shipped_and_partly_shipped_name_the_split() -> None:
    shipped = render(notice(NoticeKind.SHIPPED, split_number="1001-002"), SHOP)
    assert shipped.subject == "Your order 1001 (split 1001-002) has shipped"
    assert_common(shipped)
    assert "your order 1001 (split 1001-002) is on its way." in shipped.text
    part = render(notice(NoticeKind.PARTLY_SHIPPED, split_number="1001-backorder"), SHOP)
    assert part.subject == "Part of your order 1001 (split 1001-backorder) has shipped"
    assert_common(part)
    assert "from your order 1001 (split 1001-backorder):" in part.text
    # the order's own shipments (none, or a site that does not number splits) say nothing more
    assert "split" not in render(notice(NoticeKind.SHIPPED), SHOP).text


def test_cancelled_with_money_given_back() -> None:
    r = render(notice(NoticeKind.CANCELLED, amount=Decimal("1234.5")), SHOP)
    assert r.subject == "Items cancelled from your order 1001"
    assert_common(r)
    assert "The following items from your order 1001 have been cancelled:" in r.text
    assert "We are giving 1,234.50 USD back to your original payment method" in r.text


def test_cancelled_without_an_amount() -> None:
    for amount in (None, Decimal(0)):
        r = render(notice(NoticeKind.CANCELLED, amount=amount), BARE)
        assert_common(r, BARE)
        assert "USD" not in r.text
        assert "If you were charged for these items, the money will be returned" in r.text


def test_refunded() -> None:
    r = render(notice(NoticeKind.REFUNDED, amount=Decimal("5000"), currency="JPY"), SHOP)
    assert r.subject == "Refund for your order 1001"
    assert_common(r)
    assert "We have refunded 5,000 JPY for your order 1001" in r.text
    assert "The refund is for:" in r.text


def test_payment_problem() -> None:
    r = render(notice(NoticeKind.PAYMENT_PROBLEM), SHOP)
    assert r.subject == "Your order 1001: please check your payment details"
    assert_common(r)
    assert "could not renew the payment authorisation" in r.text


def test_ids_are_quoted_once_when_number_and_id_match() -> None:
    same = notice(NoticeKind.SHIPPED).model_copy(update={"order_number": "A-1"})
    r = render(same, SHOP)
    assert "Please quote your order number A-1 when you reply" in r.text
    assert "order reference" not in r.text


def test_links_quote_the_ids() -> None:
    odd = notice(NoticeKind.FTC_DELAY_OPTION, revised_ship_date=dt.date(2025, 6, 2))
    r = render(odd.model_copy(update={"order_number": "10 01/x"}), SHOP)
    assert "https://acme.example/orders/10%2001%2Fx/cancel" in r.text


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        ("10", "USD", "10.00 USD"),
        ("0.005", "EUR", "0.01 EUR"),
        ("1234567.891", "GBP", "1,234,567.89 GBP"),
        ("1999.5", "JPY", "2,000 JPY"),
        ("1.2345", "KWD", "1.235 KWD"),
        ("3.5", None, "3.50"),
    ],
)
def test_amounts(amount: str, currency: str | None, text: str) -> None:
    assert format_amount(Decimal(amount), currency) == text


def test_storefront_rejects_bad_settings() -> None:
    with pytest.raises(ValidationError, match="only"):
        Storefront(consent_url="https://shop.example/{order}/consent")
    with pytest.raises(ValidationError, match="time zone"):
        Storefront(timezone="Mars/Olympus")
    with pytest.raises(ValidationError):
        Storefront(shop_nam="typo")  # type: ignore[call-arg]
