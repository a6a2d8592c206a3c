"The package installs from a wheel into another location and imports without the repository; the quickstart runs."
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK_ONLY = ["papermill", "cvxpy", "ipywidgets", "matplotlib", "jupyter_book", "IPython", "ipykernel", "nbclient"]

# Simulates `pip install robbook` without the book extra: importing a package of `robbook[book]` fails.
BLOCK_BOOK = f"""
import importlib.abc, sys
class _NoBook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BOOK_ONLY!r}:
            raise ImportError(f"No module named {{name!r}} (blocked: not in the library install)")
sys.meta_path.insert(0, _NoBook())
"""


def docstring_quickstart(doc: str) -> str:
    "The indented code block after the 'Quickstart' line of the package docstring."
    after = doc.split("Quickstart", 1)[1].split("\n", 1)[1]
    block = []
    for line in after.splitlines():
        if line.strip() and not line.startswith("    "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block)).strip() + "\n"


def readme_quickstart(readme: str) -> str:
    "The python block after 'Quickstart' in the README's 'Using the package' section."
    sec = readme.split("## Using the package", 1)[1].split("\n## ", 1)[0]
    return re.search(r"Quickstart.*?```python\n(.*?)```", sec, re.S).group(1).strip() + "\n"


def _run_code(code: str, cwd, *path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(map(str, path)))
    env.pop("ROBBOOK_CACHE", None)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_quickstart_is_in_readme_and_docstring_and_runs_without_the_book_packages(tmp_path):
    import robbook
    code = docstring_quickstart(robbook.__doc__)
    assert code == readme_quickstart((ROOT / "README.md").read_text()), "README and package docstring differ"
    for name in ["Normalize", "pgd(", "evaluate_robust(", "train({", "theory"]:
        assert name in code, name
    r = _run_code(BLOCK_BOOK + code, tmp_path, ROOT)
    assert r.returncode == 0, r.stderr
    assert "False" in r.stdout                     # a fresh cache: trained, not loaded


@pytest.mark.slow
def test_wheel_installs_and_imports_outside_the_checkout(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True, timeout=600)
    wheel = next((tmp_path / "dist").glob("robbook-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for mod in ["robbook/__init__.py", "robbook/__main__.py", "robbook/run.py", "robbook/theory/__init__.py",
                "robbook/theory/tsipras.py", "robbook/theory/moayeri.py", "robbook/attacks.py", "robbook/train/__init__.py",
                "robbook/train/loop.py", "robbook/bench.py"]:
        assert mod in names, f"{mod} missing from the wheel"
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import robbook, robbook.attacks, robbook.theory.tsipras;"
            "assert robbook.__file__.startswith(sys.argv[1]), robbook.__file__; print(robbook.__version__)")
    r = subprocess.run([sys.executable, "-c", code, str(target)], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == __import__("robbook").__version__
    # the library install needs none of the book's packages; the book extra names them
    meta = next(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    reqs = [l.split(":", 1)[1].strip() for l in meta.splitlines() if l.startswith("Requires-Dist:")]
    core = [q for q in reqs if "extra ==" not in q]
    book = [q for q in reqs if re.search(r"extra == .book.", q)]
    assert any(q.startswith("torch") for q in core) and any(q.startswith("tqdm") for q in core)
    for pkg in ["papermill", "cvxpy", "ipywidgets", "matplotlib", "jupyter-book"]:
        assert not any(q.startswith(pkg) for q in core), f"{pkg} is required by the library install"
        assert any(q.startswith(pkg) for q in book), f"{pkg} is missing from robbook[book]"
    # the quickstart of the installed package's docstring runs there, without the book's packages
    import ast
    doc = ast.get_docstring(ast.parse((target / "robbook" / "__init__.py").read_text()))
    qs = BLOCK_BOOK + f"import robbook\nassert robbook.__file__.startswith({str(target)!r}), robbook.__file__\n" + \
        docstring_quickstart(doc)
    r = _run_code(qs, tmp_path, target)
    assert r.returncode == 0, r.stderr
    r = _run_code(BLOCK_BOOK + "import robbook.widgets", tmp_path, target)
    assert r.returncode != 0 and "pip install 'robbook[book]'" in r.stderr
    # `python -m robbook list` outside a checkout lists chapters, profiles and parameters from the package
    env = dict(os.environ, PYTHONPATH=str(target))
    r = subprocess.run([sys.executable, "-m", "robbook", "list"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for word in ["tsipras", "moayeri", "profiles: smoke, quick, full", "eps_grid:"]:
        assert word in r.stdout, word
