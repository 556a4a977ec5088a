"""The one set of formatters (explorer/schema/format.py): what people read in the window and in the
commands' output, with missing and non-finite values shown as such."""

import math

import pytest

from explorer.schema.format import (
    format_age,
    format_bytes,
    format_clock,
    format_count,
    format_fixed,
    format_rate,
    format_short,
    format_value,
    one_line,
    short_json,
)


@pytest.mark.parametrize(
    "n,text",
    [(896, "896 B"), (8192, "8.2 kB"), (8_388_608, "8.4 MB"), (16_777_216, "16.8 MB"), (1.4e11, "140 GB")],
)
def test_bytes_in_decimal_units_as_the_papers_give_them(n, text):
    assert format_bytes(n) == text


@pytest.mark.parametrize("bad", [None, "x", math.nan, math.inf])
def test_what_is_not_a_size_or_a_number_reads_as_missing(bad):
    assert format_bytes(bad) == "–" and format_short(bad) == "–" and format_rate(bad) == "–"
    assert format_fixed(bad) == "–"
    assert format_bytes(-1) == "–"  # no size is negative


def test_counts_and_short_counts():
    assert format_count(4_194_304) == "4,194,304" and format_count(None) == "–"
    assert format_short(4_194_304) == "4.19M" and format_short(1_229_760) == "1.23M"
    assert format_short(6_738_415_616) == "6.74B" and format_short(512) == "512"


def test_values_rates_clocks():
    assert format_value(0.0123456) == "0.01235" and format_value(2.0, 3) == "2"
    assert format_value(None) == "–" and format_value(math.nan) == "–"
    assert format_value(math.inf) == "∞" and format_value(-math.inf) == "-∞" and format_value("q") == "q"
    assert format_fixed(1.23456) == "1.2346" and format_fixed(0.5, 3) == "0.500"
    assert format_rate(1234.5) == "1234" and format_rate(45.67) == "45.7" and format_rate(2.345) == "2.35"
    assert format_clock(75.4) == "1:15" and format_clock(0) == "0:00" and format_clock(math.inf) == "?"


def test_one_line_and_short_json():
    assert one_line("a\n  b\tc ") == "a b c" and one_line(ValueError("x:\n y")) == "x: y"
    assert short_json({"v_proj": 8}) == '{"v_proj":8}'
    long = short_json(list(range(100)), 20)
    assert len(long) == 20 and long.endswith("...")


def test_the_age_of_samples_in_steps():
    assert format_age(40, 40) == "new" and format_age(39, 40) == "1 step old"
    assert format_age(0, 1_240) == "1,240 steps old" and format_age(100, 60) == "40 steps ahead"
    assert format_age(None, 3) == "–"
