"""The project's one Markdown table (:mod:`tta_energy.markdown`)."""

import pytest

from tta_energy import markdown


def test_table_has_a_header_a_separator_and_one_line_per_row():
    text = markdown.table(["model", "J/clip"], [["audioldm", "111.1"], ["tango", 2]])
    assert text.splitlines() == [
        "| model | J/clip |",
        "|---|---|",
        "| audioldm | 111.1 |",
        "| tango | 2 |",
    ]
    assert not text.endswith("\n")


def test_table_escapes_a_pipe_inside_a_cell():
    text = markdown.table(["a", "b|c"], [["x | y", "|z|"]])
    assert text.splitlines()[0] == "| a | b\\|c |"
    assert text.splitlines()[2] == "| x \\| y | \\|z\\| |"


def test_table_separator_and_rows_have_the_header_columns():
    text = markdown.table(["one", "two", "three"], [["1", "", "3"]])
    header, separator, row = text.splitlines()
    assert separator == "|---|---|---|"
    # unescaped pipes delimit the cells: as many on every line
    assert header.count("|") == separator.count("|") == row.count("|") == 4
    assert markdown.table(["only"], []) == "| only |\n|---|"


def test_table_refuses_a_row_of_another_width():
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        markdown.table(["a", "b", "c"], [["1", "2"]])
