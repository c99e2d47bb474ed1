"""The confirmation dialog's word and description."""

from __future__ import annotations

from dataclasses import replace

from tests.unit.tui.rows import row
from tui.screens.confirm import confirmation_word, describe


def test_confirmation_word() -> None:
    assert confirmation_word([row(5)]) == "rachel-5"
    assert confirmation_word([row(5, name=None)]) == "5"
    assert confirmation_word([row(1), row(2), row(3)]) == "3"
    many = describe([row(i) for i in range(1, 15)])
    assert "rachel-10" in many and "and 4 more" in many
    assert replace(row(1).server, name=None).name is None
