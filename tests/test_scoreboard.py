"The scoreboard: counts per chapter and profile from the results JSON, links to claims' rows, the CLI."
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from robbook import report

ROOT = Path(__file__).resolve().parents[1]


def _claims(*verdicts, kind="paper"):
    return [{"claim": f"{kind} claim {i}", "kind": kind, "verdict": v} for i, v in enumerate(verdicts, 1)]


def _write(path, chapter, profile, claims, started, commit="abc123"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"provenance": {"chapter": chapter, "profile": profile, "git_commit": commit,
                                               "started": started}, "results": {"claims": claims}}))


@pytest.fixture
def book(tmp_path):
    "A results folder: tsipras ran smoke (shown) and quick, moayeri never ran."
    (tmp_path / "nbs").mkdir()
    for page, title in (("01_tsipras", "Tsipras"), ("04_moayeri", "Moayeri")):
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {title} chapter")]),
                       tmp_path / "nbs" / f"{page}.ipynb")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: executed/intro\n")
    ex = tmp_path / "executed"
    smoke = _claims("reproduced", "inconclusive", "not reproduced", "not run here") + _claims("reproduced", kind="theory")
    _write(ex / "runs" / "smoke" / "tsipras.json", "tsipras", "smoke", smoke, "2026-01-01T10:00:00")
    _write(ex / "tsipras.json", "tsipras", "smoke", smoke, "2026-01-01T10:00:00")
    _write(ex / "runs" / "quick" / "tsipras.json", "tsipras", "quick",
           _claims("reproduced", "reproduced", "reproduced", "inconclusive"), "2026-01-02T10:00:00", commit="def456")
    return tmp_path


def test_counts_per_chapter_and_profile(book):
    df = report.scoreboard_frame(book)
    ts = df[df.chapter == "tsipras"].set_index("profile")
    # paper claims are counted per verdict; theory checks apart, never mixed into the paper's counts
    assert ts.loc["smoke", ["reproduced", "inconclusive", "not reproduced", "not run here"]].tolist() == [1, 1, 1, 1]
    assert ts.loc["smoke", "theory checks"] == "1 / 1" and ts.loc["quick", "theory checks"] == "—"
    assert ts.loc["quick", ["reproduced", "inconclusive"]].tolist() == [3, 1]
    assert ts.loc["smoke", "shown in the book"] and not ts.loc["quick", "shown in the book"]
    assert ts.loc["quick", "commit"] == "def456"
    assert df[df.chapter == "moayeri"]["profile"].tolist() == ["not run yet"], "every chapter is covered"


def test_html_links_each_claim_to_its_row(book):
    html = report.scoreboard_html(book)
    for i in range(1, 5):
        assert f"01_tsipras.html#{report.claim_anchor(i)}" in html
    assert "Tsipras chapter" in html and "Moayeri chapter" in html and "not run yet" in html
    assert "def456" in html and "abc123" in html


def test_html_counts_kinds_apart_with_coverage_and_stand_ins(book):
    d = json.loads((book / "executed" / "tsipras.json").read_text())
    d["results"].update(coverage={"main claims": 5, "with a row": 5, "run here": 3, "not run here": ["a", "b"]},
                        stand_ins={"MNIST": "Fashion-MNIST"})
    for f in (book / "executed" / "tsipras.json", book / "executed" / "runs" / "smoke" / "tsipras.json"):
        f.write_text(json.dumps(d))
    html = report.scoreboard_html(book)
    assert "3 of the paper's 5 main claims ran here" in html and "MNIST → Fashion-MNIST" in html
    assert "theory checks" in html and "paper claims" in html


def test_cli_scoreboard(book):
    r = subprocess.run([sys.executable, "-m", "robbook", "scoreboard", "--root", str(book), "--claims"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "tsipras" in r.stdout and "moayeri" in r.stdout and "not run yet" in r.stdout
    assert "claim 3" in r.stdout and "not reproduced" in r.stdout
