"""The performance READMEs' tables are what their results files give, and drift is caught."""

from __future__ import annotations

import csv
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

PERFORMANCE = Path(__file__).resolve().parents[2] / "experiments" / "performance"


@pytest.fixture
def tables(monkeypatch):
    spec = importlib.util.spec_from_file_location("performance_tables", PERFORMANCE / "tables.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_every_committed_table_is_what_its_results_files_give(tables):
    assert tables.stale() == [], "run: python experiments/performance/tables.py"


def test_every_readme_table_of_figures_is_generated(tables):
    """A table of measured figures outside the markers could drift unseen; the tables left by
    hand describe arms, methods or differences in words."""
    by_hand = {"| arm | what runs |", "| name | what runs |"}
    for path in tables.READMES:
        inside = False
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            inside = (inside or line.startswith("<!-- table:")) and line != "<!-- /table -->"
            starts = line.startswith("|") and not lines[i - 1].startswith("|")
            if starts and not inside:
                assert any(line.startswith(h) for h in by_hand), f"{path}:{i + 1}: {line}"


def test_a_changed_figure_makes_its_tables_stale(tables, tmp_path, monkeypatch):
    copy = tmp_path / "performance"
    shutil.copytree(PERFORMANCE, copy, ignore=shutil.ignore_patterns(".venv*", "*.py"))
    monkeypatch.setattr(tables, "HERE", copy)
    results = copy / "eval_harness" / "results.csv"
    with results.open(newline="") as f:
        rows = list(csv.DictReader(f))
    rows[1]["speedup"] = "9.99"
    with results.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    readmes = [copy / "README.md", copy / "eval_harness" / "README.md"]
    assert tables.stale(readmes) == [
        "README.md: overview",  # its headline cell quotes the n=10 speed-up too
        "README.md: eval_harness",
        "eval_harness/README.md: eval_harness",
    ]
    # Regenerating puts the new figure in and nothing is stale after.
    monkeypatch.setattr(tables, "READMES", readmes)
    assert tables.main([]) == 0
    assert "**9.99**" in (copy / "README.md").read_text()
    assert tables.stale(readmes) == []


def test_an_unknown_table_name_is_named(tables, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- table: no_such_table -->\n| a |\n<!-- /table -->\n")
    with pytest.raises(SystemExit, match="unknown table 'no_such_table'"):
        tables.stale([readme])
