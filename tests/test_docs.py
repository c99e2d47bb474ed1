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


def _fault_section() -> str:
    text = README.read_text()
    start = text.index("## Fault injection (the simulator)")
    return text[start : text.index("\n## ", start + 1)]


def test_readme_documents_every_simulator_fault_and_the_admin_api() -> None:
    import json
    import re

    from core.cloud.vps_contract import INSTALL_STEPS
    from sim.admin import ROUTES
    from sim.faults import Faults, parse_fault_request, parse_faults

    section = _fault_section()
    for name in Faults.__struct_fields__:
        assert f"| `{name}` |" in section, f"fault {name} is not in the README's table"
    for step in INSTALL_STEPS:
        assert f"`{step}`" in section
    for route in ROUTES:
        assert f"`{route.method} /_sim{route.template}`" in section, route.template
    for setting in ("RACHEL_SIM_FAULTS", "HCLOUD_TOKEN", "RACHEL_SIM_PORT"):
        assert setting in section
    # Every example document is one the simulator accepts.
    examples = re.findall(r"(?:RACHEL_SIM_FAULTS=|-d )'(\{.*?\})'", section, re.DOTALL)
    assert len(examples) >= 3
    for example in examples:
        if '"fault"' in example:  # a running VPS's fault (POST/DELETE /_sim/vps/faults)
            body = json.loads(example)
            parse_fault_request(body, clearing=body["fault"] is None)
        elif '"ssh_refuse": true' not in example:  # a per-server fault, not a document
            parse_faults(example)


def test_sim_help_tells_about_fault_injection() -> None:
    from click.testing import CliRunner

    from cli.main import cli
    from sim.faults import Faults

    result = CliRunner().invoke(cli, ["sim", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Fault injection" in result.output and "README" in result.output
    assert "RACHEL_SIM_FAULTS" in result.output and "PUT /_sim/faults" in result.output
    assert "/_sim/servers/ID/faults" in result.output and "HCLOUD_TOKEN" in result.output
    for name in Faults.__struct_fields__:
        if name != "seed":
            assert name in result.output, name
