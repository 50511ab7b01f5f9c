"""Account rules of ``domain.model.users``: what an address is, names from providers, and the
hand-over of an account to its address's proven owner."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from whalli.domain.model.errors import InvalidEmail
from whalli.domain.model.users import (
    USER_NAME_MAX_LENGTH,
    clean_external_name,
    clean_user_name,
    email_spellings,
    normalize_email,
)

NOW = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "address",
    [
        "x@example.com.",
        "x@example..com",
        "x@.example.com",
        "x@example.com..",
        "x@..com",
        f"x@{'a' * 64}.com",
        f"x@example.{'c' * 64}",
    ],
)
def test_a_domain_with_an_empty_or_overlong_label_is_not_an_address(address: str) -> None:
    with pytest.raises(InvalidEmail, match="email address") as refused:
        normalize_email(address)
    assert refused.value.details == {"field": "email"}


@pytest.mark.parametrize(
    "address",
    ["x@example.com", "x@mail.example.co.uk", f"x@{'a' * 63}.com", "x@a.b", "x@bücher.example"],
)
def test_a_domain_whose_labels_all_have_1_to_63_characters_is_accepted(address: str) -> None:
    assert normalize_email(address) == address


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("x@xn--bcher-kva.example", "x@b\u00fccher.example"),
        ("x@XN--BCHER-KVA.Example", "x@b\u00fccher.example"),
        ("x@B\u00dcCHER.example", "x@b\u00fccher.example"),
        ("x@xn--fuball-cta.de", "x@fu\u00dfball.de"),  # IDNA 2008: no mapping of \u00df to ss
        (
            "x@mail.xn--80akhbyknj4f.xn--p1ai",
            "x@mail.\u0438\u0441\u043f\u044b\u0442\u0430\u043d\u0438\u0435.\u0440\u0444",
        ),
    ],
)
def test_an_internationalized_domain_is_kept_in_unicode_however_it_is_typed(
    typed: str, stored: str
) -> None:
    assert normalize_email(typed) == stored
    assert normalize_email(stored) == stored


@pytest.mark.parametrize(
    "address",
    [
        "x@xn--.example",  # nothing encoded
        "x@xn--abc-.example",  # ASCII only: not an A-label
        "x@xn--bcher-kva!.example",  # not Punycode
        "x@xn--bcher-kva-.example",  # another encoding of a label: not the one spelling
    ],
)
def test_an_ascii_label_that_is_not_the_encoding_of_a_unicode_label_is_not_an_address(
    address: str,
) -> None:
    with pytest.raises(InvalidEmail, match="email address"):
        normalize_email(address)


@given(
    st.text(
        st.characters(whitelist_categories=("Ll", "Lo"), max_codepoint=0x2FFF),
        min_size=1,
        max_size=20,
    )
)
def test_a_unicode_label_and_its_ascii_spelling_are_one_address(label: str) -> None:
    try:
        unicode = normalize_email(f"x@{label}.example")
    except InvalidEmail:
        return  # not a label (too long once normalized, or a control character)
    spellings = email_spellings(unicode)
    assert spellings[0] == unicode
    assert all(normalize_email(spelling) == unicode for spelling in spellings)
    assert len(spellings) == (1 if unicode.isascii() else 2)


def test_a_provider_name_has_its_control_characters_and_runs_of_space_made_single_spaces() -> None:
    assert clean_external_name("  Ada\tLovelace\n") == "Ada Lovelace"
    assert clean_external_name("Ada\x00\x1b[31m  \u0085Byron") == "Ada [31m Byron"
    assert clean_external_name("Zoë 👩\u200d💻") == "Zoë 👩\u200d💻"  # format characters stay


@pytest.mark.parametrize("name", [None, "", "\t\n\r", "\x00\x07 \x7f"])
def test_a_provider_name_of_nothing_but_control_characters_cleans_to_nothing(
    name: str | None,
) -> None:
    assert clean_external_name(name) == ""


def test_a_long_provider_name_is_cut_to_the_limit_without_a_trailing_space() -> None:
    name = "a" * (USER_NAME_MAX_LENGTH - 1) + "\t" + "b" * 10
    assert clean_external_name(name) == "a" * (USER_NAME_MAX_LENGTH - 1)


@given(st.text(max_size=300))
def test_any_cleaned_provider_name_is_a_name_an_account_may_hold(name: str) -> None:
    cleaned = clean_external_name(name)
    assert clean_user_name(cleaned) == cleaned
    assert clean_external_name(cleaned) == cleaned
