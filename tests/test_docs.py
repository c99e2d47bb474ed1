"""The README's settings tables are the ones generated from the settings' declarations."""

from pathlib import Path

from cli.settings import settings_doc
from core.platform.settings import settings_table_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_settings_table_is_current() -> None:
    assert settings_table_markdown() in README.read_text(), (
        "README.md's settings table is stale: paste `rachel-cloud settings --doc` into it"
    )


def test_readme_has_every_settings_table_as_generated() -> None:
    assert settings_doc() in README.read_text(), (
        "README.md's settings tables are stale: paste `rachel-cloud settings --doc` into them"
    )
