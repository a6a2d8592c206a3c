"""robbook.claims: every chapter's verdicts come from the package (issue #24). Each chapter notebook builds no Claim
itself; it calls its module's builder and prints the table with the module's PAPER_CLAIMS."""
import importlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = {"tsipras": "01_tsipras", "ilyas": "02_ilyas", "kamath": "03_kamath", "moayeri": "04_moayeri"}


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_the_chapter_calls_the_package_for_its_claims(chapter):
    nb = json.loads((ROOT / "nbs" / f"{CHAPTERS[chapter]}.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    mod = importlib.import_module(f"robbook.claims.{chapter}")
    assert "Claim(" not in code and "PAPER_CLAIMS = {" not in code
    assert f"from robbook.claims.{chapter} import" in code and f"{chapter}_claims(" in code
    assert "claims_table(claims, cfg.profile, PAPER_CLAIMS)" in code and "claims_results(claims, PAPER_CLAIMS" in code
    assert callable(getattr(mod, f"{chapter}_claims")) and len(mod.PAPER_CLAIMS) >= 8
