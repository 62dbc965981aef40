"""PII detection and redaction; valid numbers are built here with independent checksums."""

from __future__ import annotations

import pytest

from vla_data.textfilters import PII_TYPES, PiiRedactor, detect_pii, redact
from vla_data.textfilters.pii import card_brand, is_valid_cn_id

ZERO = dict.fromkeys(PII_TYPES, 0)


def cn_id(first17: str) -> str:
    """Append the GB 11643 check character (remainder -> "10X98765432")."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    remainder = sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11
    return first17 + "10X98765432"[remainder]


def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in reversed(number)]
    doubled = (sum(divmod(2 * d, 10)) for d in digits[1::2])
    return (sum(digits[0::2]) + sum(doubled)) % 10 == 0


def luhn_complete(prefix: str) -> str:
    return next(prefix + d for d in "0123456789" if luhn_ok(prefix + d))


def wrong_last(number: str) -> str:
    return number[:-1] + ("0" if number[-1] != "0" else "1")


def kinds(text: str) -> list[tuple[str, str]]:
    return [(m.kind, m.text) for m in detect_pii(text)]


# ---------------------------------------------------------------- CN resident ID


def test_cn_id_valid_and_invalid() -> None:
    assert cn_id("11010519491231002") == "11010519491231002X"  # the GB 11643 sample number
    good = cn_id("44030619900307123")
    for number in (good, "11010519491231002X", "11010519491231002x"):
        assert kinds(f"身份证号：{number}。") == [("CN_ID", number)]
        assert is_valid_cn_id(number)
    bad_checksum = wrong_last(good)
    bad_date = cn_id("44030619900230123")  # 30 February
    bad_region = cn_id("99030619900307123")
    for number in (bad_checksum, bad_date, bad_region, "123456789012345678"):
        assert not is_valid_cn_id(number)
        assert redact(f"ID {number} here") == (f"ID {number} here", ZERO)
    assert kinds("x" + good) == []  # glued to a letter
    assert kinds(good + "1") == []  # 19 digits


# ---------------------------------------------------------------- payment cards

MASTERCARD = luhn_complete("555555555555444")
UNIONPAY = luhn_complete("621234567890123")
JCB = luhn_complete("353011133330000")


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4111 1111 1111 1111", "visa"),
        ("4111-1111-1111-1111", "visa"),
        ("4222222222222", "visa"),
        (MASTERCARD, "mastercard"),
        ("3782 822463 10005", "amex"),
        ("6011111111111117", "discover"),
        (UNIONPAY, "unionpay"),
        (JCB, "jcb"),
    ],
)
def test_valid_cards(number: str, brand: str) -> None:
    digits = number.replace(" ", "").replace("-", "")
    assert luhn_ok(digits) and card_brand(digits) == brand
    assert redact(f"Card: {number}.") == ("Card: <CARD>.", {**ZERO, "CARD": 1})


def test_invalid_cards() -> None:
    bad_iin = luhn_complete("123456789012345")  # Luhn-valid, no issuer starts with 12
    for number in ("4111 1111 1111 1112", wrong_last(UNIONPAY), bad_iin, "4111 1111 1111 111"):
        assert kinds(f"Card: {number}.") == []
    # a card followed by a year: only the card's digit groups are taken
    assert redact("4111 1111 1111 1111 2025") == ("<CARD> 2025", {**ZERO, "CARD": 1})


# ---------------------------------------------------------------- e-mail, phone, IP


def test_emails() -> None:
    assert redact("Write to jane.doe+robots@example.co.uk.") == (
        "Write to <EMAIL>.",
        {**ZERO, "EMAIL": 1},
    )
    assert kinds("邮箱13812345678@163.com") == [("EMAIL", "13812345678@163.com")]
    assert kinds("not an email: foo@bar, @home, a@b.c") == []


@pytest.mark.parametrize(
    "phone",
    [
        "+86 138 1234 5678",
        "+86-138-1234-5678",
        "0086 13912345678",
        "(+86) 13812345678",
        "13812345678",
        "(212) 555-0123",
        "212-555-0123",
        "+1 415 555 0100",
        "+44 20 7946 0958",
    ],
)
def test_phones(phone: str) -> None:
    assert kinds(f"电话{phone}，") == [("PHONE", phone)]


def test_not_phones() -> None:
    for text in ("12812345678", "2125550123", "+12 34", "call 555-0123"):
        assert kinds(text) == [], text


def test_ip_addresses() -> None:
    for ip in (
        "192.168.1.10",
        "8.8.8.8",
        "2001:db8::8a2e:370:7334",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "fe80::1",
        "::ffff:192.0.2.1",
    ):
        assert kinds(f"host {ip}, up") == [("IP", ip)], ip
    for text in ("999.1.1.1", "10.0.0.256", "1.2.3.4.5", "12:30:45", "a :: b", "00:1A:2B:3C:4D:5E"):
        assert kinds(f"value {text} end") == [], text


# ---------------------------------------------------------------- redaction


def test_no_false_positives_on_ordinary_numbers() -> None:
    text = (
        "In 1999 the price was $12.99 and on 2024-01-01 we sold 1,234,567 units; order "
        "123456789012345678 shipped, ticket 20240101123456, version 3.11.4, ratio 16:9."
    )
    assert redact(text) == (text, ZERO)


def test_redact_counts_and_determinism() -> None:
    text = (
        "张三，身份证 11010519491231002X，手机 +86 138 1234 5678，邮箱 zs@example.cn，"
        "卡号 4111-1111-1111-1111，服务器 10.0.0.1 / 2001:db8::1，备用 13912345678。"
    )
    expected = "张三，身份证 <CN_ID>，手机 <PHONE>，邮箱 <EMAIL>，卡号 <CARD>，服务器 <IP> / <IP>，备用 <PHONE>。"
    counts = {"EMAIL": 1, "CN_ID": 1, "CARD": 1, "IP": 2, "PHONE": 2}
    assert redact(text) == (expected, counts)
    assert redact(text) == redact(text)
    matches = detect_pii(text)
    assert all(a.end <= b.start for a, b in zip(matches, matches[1:], strict=False))


def test_cn_id_takes_precedence_over_card() -> None:
    number = next(
        n
        for n in (cn_id(f"62010219900101{seq:03d}") for seq in range(1000))
        if n[-1] != "X" and luhn_ok(n)
    )
    assert card_brand(number) == "unionpay"  # both detectors accept it ...
    assert kinds(f"号码 {number}") == [("CN_ID", number)]  # ... the ID wins
    assert [m.kind for m in PiiRedactor(types=("CARD",)).detect(number)] == ["CARD"]


def test_redactor_config_and_check() -> None:
    r = PiiRedactor(types=("EMAIL",), placeholders={"EMAIL": "[email]"})
    assert r.redact("a@b.io 13812345678") == ("[email] 13812345678", {"EMAIL": 1})
    with pytest.raises(ValueError):
        PiiRedactor(types=("SSN",))
    text = "call 13812345678 or 13912345678 now"
    assert PiiRedactor().check(text).keep
    result = PiiRedactor(max_matches_per_1k_words=100).check(text)
    assert (result.keep, result.reason) == (False, "pii_density")
    assert result.scores["pii_phone"] == 2 and result.scores["pii_total"] == 2
