"""docs/profiles.md is generated from the code (`chiploop profiles reference`) and must equal it."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from chiploop.chip_profiles.model import field_paths, leaf_paths
from chiploop.chip_profiles.reference import markdown
from chiploop.cli import app

DOCS = Path(__file__).resolve().parents[2] / "docs" / "profiles.md"


def test_committed_reference_is_what_the_code_generates() -> None:
    assert DOCS.read_text(encoding="utf-8") == markdown(), (
        "docs/profiles.md is stale: run `chiploop profiles reference > docs/profiles.md`"
    )


def test_profiles_reference_prints_it() -> None:
    result = CliRunner().invoke(app, ["profiles", "reference"])
    assert result.exit_code == 0, result.output
    assert result.stdout == DOCS.read_text(encoding="utf-8")


def test_every_field_has_a_meaning_and_times_a_unit() -> None:
    infos = field_paths()
    assert [path for path in leaf_paths() if not infos[path].description] == []
    timed = [path for path in leaf_paths() if path.endswith("_s")]
    assert timed and all(infos[path].json_schema_extra == {"unit": "s"} for path in timed)


def test_every_field_and_built_in_is_in_the_reference() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert all(f"| `{path}` |" in text for path in leaf_paths())
    assert "| `xylo` | — / — | — / — | — / — | 1007 / 63 | — / — |" in text
