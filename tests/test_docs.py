"""The README's settings table is the one generated from core/platform/settings.py."""

from pathlib import Path

from core.platform.settings import settings_table_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_settings_table_is_current() -> None:
    assert settings_table_markdown() in README.read_text(), (
        "README.md's settings table is stale: paste `rachel-cloud settings --doc` into it"
    )
