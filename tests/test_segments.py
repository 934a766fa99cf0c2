"""How a text is encoded and split into SMS segments."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.segments import (
    GSM7,
    GSM7_MULTI,
    GSM7_SINGLE,
    GSM_ALPHABET,
    GSM_EXTENSION,
    UCS2,
    UCS2_MULTI,
    UCS2_SINGLE,
    Segmentation,
    segment,
)

EMOJI = "😀"


def units_of(part: str, encoding: str) -> int:
    """An independent count of a part's cost, to check `segment` against."""
    if encoding == GSM7:
        return sum(2 if char in GSM_EXTENSION else 1 for char in part)
    return sum(2 if ord(char) > 0xFFFF else 1 for char in part)


# -- encoding choice ---------------------------------------------------------------


def test_plain_ascii_text_is_gsm7() -> None:
    result = segment("Hello, world!")
    assert result == Segmentation(GSM7, 13, 1, ("Hello, world!",))


def test_the_whole_basic_table_is_gsm7_at_one_septet_each() -> None:
    basic = (
        "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
        "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
    )
    result = segment(basic)
    assert result.encoding == GSM7
    assert result.units == len(basic)


def test_every_extension_character_is_gsm7_at_two_septets() -> None:
    extension = "\f^{}\\[~]|€"
    result = segment(extension)
    assert result.encoding == GSM7
    assert result.units == 2 * len(extension)


def test_uppercase_c_cedilla_is_in_the_gsm7_alphabet() -> None:
    assert segment("Ç").encoding == GSM7


def test_lowercase_c_cedilla_forces_ucs2() -> None:
    result = segment("Garçon")
    assert result.encoding == UCS2
    assert result.units == 6


@pytest.mark.parametrize("char", ["`", "á", "ж", "中", "\t", "\x1b", EMOJI])
def test_a_single_character_outside_the_gsm7_alphabet_forces_ucs2(char: str) -> None:
    assert segment("abc" + char).encoding == UCS2


def test_empty_text_is_one_gsm7_segment_of_zero_units() -> None:
    assert segment("") == Segmentation(GSM7, 0, 1, ("",))


# -- GSM-7 segment boundaries ------------------------------------------------------


def test_160_gsm7_characters_fit_one_segment() -> None:
    text = "a" * 160
    assert segment(text) == Segmentation(GSM7, 160, 1, (text,))


def test_161_gsm7_characters_split_153_plus_8() -> None:
    result = segment("a" * 161)
    assert result.segments == 2
    assert [len(part) for part in result.parts] == [153, 8]


def test_306_gsm7_characters_fill_exactly_two_segments() -> None:
    result = segment("a" * 306)
    assert result.segments == 2
    assert [len(part) for part in result.parts] == [153, 153]


def test_307_gsm7_characters_need_three_segments() -> None:
    result = segment("a" * 307)
    assert result.segments == 3
    assert [len(part) for part in result.parts] == [153, 153, 1]


def test_80_euro_signs_cost_160_septets_and_fit_one_segment() -> None:
    result = segment("€" * 80)
    assert result.encoding == GSM7
    assert result.units == 160
    assert result.segments == 1


def test_81_euro_signs_cost_162_septets_and_need_two_segments() -> None:
    result = segment("€" * 81)
    assert result.units == 162
    assert result.segments == 2
    # 76 euros are 152 septets; the 77th would need 154, so it opens the next part.
    assert [len(part) for part in result.parts] == [76, 5]


def test_an_extension_character_straddling_septet_153_moves_whole_to_the_next_part() -> None:
    text = "a" * 152 + "{" + "b" * 10
    result = segment(text)
    assert result.units == 164
    assert result.parts == ("a" * 152, "{" + "b" * 10)
    assert units_of(result.parts[0], GSM7) == 152


def test_an_extension_character_ending_exactly_at_septet_153_stays_in_the_first_part() -> None:
    text = "a" * 151 + "{" + "b" * 10
    result = segment(text)
    assert result.parts == ("a" * 151 + "{", "b" * 10)


def test_escape_pairs_can_push_a_message_into_an_extra_segment() -> None:
    # 306 septets fit two full parts only if no pair is split; here one must move.
    text = "a" * 152 + "€" + "a" * 152
    result = segment(text)
    assert result.units == 306
    assert result.segments == 3


# -- UCS-2 segment boundaries ------------------------------------------------------


def test_70_ucs2_units_fit_one_segment() -> None:
    text = "ж" * 70
    assert segment(text) == Segmentation(UCS2, 70, 1, (text,))


def test_71_ucs2_units_split_67_plus_4() -> None:
    result = segment("ж" * 71)
    assert result.segments == 2
    assert [len(part) for part in result.parts] == [67, 4]


def test_an_emoji_costs_two_ucs2_units() -> None:
    result = segment(EMOJI)
    assert result.encoding == UCS2
    assert result.units == 2


def test_35_emoji_fill_exactly_one_segment() -> None:
    assert segment(EMOJI * 35).segments == 1
    assert segment(EMOJI * 36).segments == 2


def test_an_emoji_straddling_unit_67_moves_whole_to_the_next_part() -> None:
    text = "ж" * 66 + EMOJI + "ж" * 10
    result = segment(text)
    assert result.units == 78
    assert result.parts == ("ж" * 66, EMOJI + "ж" * 10)


def test_an_emoji_ending_exactly_at_unit_67_stays_in_the_first_part() -> None:
    text = "ж" * 65 + EMOJI + "ж" * 10
    result = segment(text)
    assert result.parts == ("ж" * 65 + EMOJI, "ж" * 10)


def test_one_non_gsm_character_turns_a_one_segment_gsm_text_into_three_ucs2_segments() -> None:
    result = segment("a" * 159 + "ç")
    assert result.encoding == UCS2
    assert result.units == 160
    assert result.segments == 3


# -- properties --------------------------------------------------------------------

gsm_text = st.text(alphabet=st.sampled_from(sorted(GSM_ALPHABET)), max_size=500)
# Weighted towards the interesting cases: extension characters and surrogate pairs.
any_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(sorted(GSM_ALPHABET)),
        st.sampled_from(sorted(GSM_EXTENSION)),
        st.sampled_from([EMOJI, "𝄞", "ж", "ç"]),
        st.characters(codec="utf-8"),
    ),
    max_size=500,
)


@given(st.one_of(gsm_text, any_text))
def test_parts_join_back_to_the_text(text: str) -> None:
    assert "".join(segment(text).parts) == text


@given(st.one_of(gsm_text, any_text))
def test_segments_counts_the_parts(text: str) -> None:
    result = segment(text)
    assert result.segments == len(result.parts) >= 1


@given(st.one_of(gsm_text, any_text))
def test_units_are_the_sum_of_the_parts_units(text: str) -> None:
    result = segment(text)
    assert result.units == sum(units_of(part, result.encoding) for part in result.parts)


@given(st.one_of(gsm_text, any_text))
def test_every_part_fits_its_segment_budget(text: str) -> None:
    result = segment(text)
    if result.segments == 1:
        single = GSM7_SINGLE if result.encoding == GSM7 else UCS2_SINGLE
        assert result.units <= single
    else:
        multi = GSM7_MULTI if result.encoding == GSM7 else UCS2_MULTI
        for part in result.parts:
            assert 0 < units_of(part, result.encoding) <= multi


@given(gsm_text)
def test_text_of_gsm7_characters_is_always_gsm7(text: str) -> None:
    assert segment(text).encoding == GSM7


@given(any_text)
def test_a_part_is_cut_only_where_the_next_character_would_not_fit(text: str) -> None:
    result = segment(text)
    if result.segments == 1:
        return
    multi = GSM7_MULTI if result.encoding == GSM7 else UCS2_MULTI
    for part, following in zip(result.parts, result.parts[1:], strict=False):
        room = multi - units_of(part, result.encoding)
        assert units_of(following[0], result.encoding) > room
