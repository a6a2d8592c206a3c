"The package installs from a wheel into another location and imports without the repository."
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_and_imports_outside_the_checkout(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True, timeout=600)
    wheel = next((tmp_path / "dist").glob("robbook-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for mod in ["robbook/__init__.py", "robbook/__main__.py", "robbook/run.py", "robbook/theory/__init__.py",
                "robbook/theory/tsipras.py", "robbook/theory/moayeri.py", "robbook/attacks.py", "robbook/train.py"]:
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
