"Platform checks: parameters and profiles, the run CLI's preprocessing, widgets, claims, source hygiene."
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from robbook import config, profiles, report, run, widgets

ROOT = Path(__file__).resolve().parents[1]


# ---------- config / profiles ----------

def test_resolve_merges_overrides_and_keeps_profile_values():
    cfg = config.resolve("demo", "quick", n=5)
    assert cfg.n == 5 and cfg.eps == profiles.PROFILES["demo"]["quick"]["eps"]
    assert cfg.profile == "quick" and cfg.device == "auto" and cfg.seed == 0


def test_resolve_none_means_profile_value():
    assert config.resolve("demo", "full", n=None).n == profiles.PROFILES["demo"]["full"]["n"]


@pytest.mark.parametrize("kw, fragment", [
    (dict(profile="fast"), "allowed values"),
    (dict(bogus=1), "'bogus'"),
    (dict(n="seven"), "parameter 'n'"),
    (dict(n=1.5), "parameter 'n'"),
    (dict(eps=True), "parameter 'eps'"),
    (dict(device="gpu"), "parameter 'device'"),
    (dict(seed="x"), "parameter 'seed'"),
])
def test_resolve_rejects_bad_parameters_naming_them(kw, fragment):
    with pytest.raises(config.ParameterError) as e:
        config.resolve("demo", **kw)
    assert fragment in str(e.value)


def test_unknown_chapter_lists_known_ones():
    with pytest.raises(config.ParameterError, match="demo"):
        config.resolve("no-such-chapter")


def test_int_accepted_for_float():
    assert config.resolve("demo", eps=1).eps == 1.0


def test_every_chapter_profile_set_is_complete():
    for chap, profs in profiles.PROFILES.items():
        assert {"smoke", "quick", "full"} <= set(profs), chap
        keys = [set(p) for p in profs.values()]
        assert all(k == keys[0] for k in keys), chap
        assert not (keys[0] & set(config.COMMON_PARAMS)), f"{chap} redefines a common parameter"


def test_register_rejects_inconsistent_profiles():
    with pytest.raises(ValueError, match="disagree"):
        profiles.register("_bad", {"smoke": {"a": 1}, "quick": {"b": 1}})
    assert "_bad" not in profiles.PROFILES


def test_finish_run_writes_results_json(tmp_path):
    cfg = config.start_run(config.resolve("demo", results_dir=str(tmp_path), device="cpu"), show=False)
    out = config.finish_run(cfg, {"acc": 0.5}, show=False)
    data = json.loads(out.read_text())
    assert data["results"] == {"acc": 0.5}
    prov = data["provenance"]
    assert prov["profile"] == "smoke" and prov["wall_time_s"] >= 0 and "CPU" in prov["device"]
    assert prov["torch"] and prov["git_commit"]


def test_cuda_request_without_gpu_is_a_clear_error():
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(config.ParameterError, match="device='cpu'"):
        config.get_device("cuda")


def test_seed_everything_makes_torch_and_numpy_repeat():
    import numpy as np, torch
    config.seed_everything(3); a = (torch.rand(3), np.random.rand(3))
    config.seed_everything(3); b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and (a[1] == b[1]).all()


# ---------- chapters' parameters cells ----------

def _parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    return cells[0] if cells else None


def test_chapters_parameters_cells_list_exactly_their_knobs():
    for page in run.book_pages(ROOT):
        chap = run.chapter_name(page)
        if chap not in profiles.PROFILES:
            continue
        nb = nbformat.read(run.source_of(page, ROOT), as_version=4)
        cell = _parameters_cell(nb)
        assert cell is not None, f"{page} has no cell tagged 'parameters'"
        ns = {}
        exec(cell.source, ns)
        names = {k for k in ns if not k.startswith("__")}
        want = set(config.COMMON_PARAMS) | set(next(iter(profiles.PROFILES[chap].values())))
        assert names == want, f"{page}: parameters cell differs from the profile by {sorted(names ^ want)}"
        assert ns["profile"] == "smoke"


# ---------- run CLI ----------

def test_split_directives_and_preprocess():
    d, code = run.split_directives("#| export\n#|hide\n\nx = 1\n#| later")
    assert d == {"export": "", "hide": ""} and code == "x = 1\n#| later"
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("#| default_exp foo"),
        nbformat.v4.new_code_cell("#| hide\nimport os"),
        nbformat.v4.new_code_cell("#| echo: false\nprint(1)"),
        nbformat.v4.new_code_cell("#| eval: false\nloop()"),
        nbformat.v4.new_markdown_cell("#| not code"),
    ])
    out = run.preprocess(nb)
    assert [c.cell_type for c in out.cells] == ["code", "code", "markdown", "markdown"]
    assert out.cells[0].metadata["tags"] == ["remove-cell"]
    assert out.cells[1].metadata["tags"] == ["remove-input"] and out.cells[1].source == "print(1)"
    assert "loop()" in out.cells[2].source and "```python" in out.cells[2].source
    assert nb.cells[1].source.startswith("#| hide"), "preprocess must not modify its input"


def test_parse_value():
    assert run.parse_value("0.5") == 0.5 and run.parse_value("[1, 2]") == [1, 2]
    assert run.parse_value("None") is None and run.parse_value("True") is True
    assert run.parse_value("resnet18") == "resnet18"


def test_every_toc_page_has_a_source_and_every_notebook_is_in_the_book():
    pages = run.book_pages(ROOT)
    assert pages[0] == "intro"
    for p in pages:
        assert run.source_of(p, ROOT).exists()
    not_in_book = {"19c_main"}  # the `python -m robbook` entry point: three lines, no page
    for nb in (ROOT / "nbs").glob("*.ipynb"):
        assert nb.stem in pages or nb.stem in not_in_book, f"{nb.name} is not in _toc.yml"


def test_cli_rejects_unknown_parameter_before_running(tmp_path):
    r = subprocess.run([sys.executable, "-m", "robbook", "run", "config", "-p", "bogus", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "bogus" in r.stderr and "library page" in r.stderr


def test_cli_rejects_unknown_chapter():
    r = subprocess.run([sys.executable, "-m", "robbook", "run", "nochapter"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown chapter" in r.stderr and "tsipras" in r.stderr


@pytest.mark.parametrize("chapter", [c for c in profiles.PROFILES if c not in ("demo",)])
def test_cli_rejects_bad_profile_and_type_for_each_chapter(chapter):
    r = subprocess.run([sys.executable, "-m", "robbook", "run", chapter, "--profile", "huge"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "'profile'" in r.stderr and "smoke" in r.stderr
    key, val = next(iter(profiles.PROFILES[chapter]["smoke"].items()))
    bad = "[1, 2]" if not isinstance(val, list) else "3"
    r = subprocess.run([sys.executable, "-m", "robbook", "run", chapter, "-p", key, bad],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and f"'{key}'" in r.stderr


# ---------- widgets ----------

def _fig(a, b):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [a, b])
    return fig


def test_knobs_precomputes_every_frame_and_links_sliders():
    calls = []

    def fn(a, b):
        calls.append((a, b))
        return _fig(a, b)

    w = widgets.knobs(fn, {"a": [1, 2, 3], "b": [0.1, 0.2]}, live=False, progress=False)
    assert sorted(calls) == sorted((a, b) for a in [1, 2, 3] for b in [0.1, 0.2])
    sliders, outer = w.children[0].children, w.children[1]
    assert len(sliders) == 2 and len(outer.children) == 3
    assert all(len(s.children) == 2 for s in outer.children)
    frames = {f.value for s in outer.children for f in s.children}
    assert len(frames) == 6, "every grid point must give its own frame"
    # jslink lives in the browser (the browser test moves a slider); here: every stack is linked.
    import ipywidgets as W
    from ipywidgets.widgets.widget import _instances
    from ipywidgets.widgets.widget_link import Link
    links = [x for x in _instances.values() if isinstance(x, Link)]
    stacks = [outer, *outer.children]
    for st in stacks:
        lk = [l for l in links if l.target[0] is st]
        assert len(lk) == 1 and lk[0].source == (sliders[0 if st is outer else 1], "index")
        assert lk[0].target[1] == "selected_index"


def test_knobs_errors():
    with pytest.raises(ValueError, match="at least one knob"):
        widgets.knobs(_fig, {})
    with pytest.raises(ValueError, match="frames"):
        widgets.knobs(_fig, {"a": list(range(30)), "b": list(range(30))}, live=False, max_frames=100)
    with pytest.raises(TypeError, match="matplotlib Figure"):
        widgets.knobs(lambda a, b: 3, {"a": [1], "b": [2]}, live=False, progress=False)


def test_live_knobs_recompute():
    seen = []

    def fn(a, b):
        seen.append((a, b))
        return _fig(a, b)

    w = widgets.knobs(fn, {"a": [0.0, 1.0], "b": [1, 2]}, live=True)
    ctrl = w.children[0].children
    ctrl[0].value = 0.37
    assert seen[-1][0] == pytest.approx(0.37), "live sliders recompute at values off the grid"


# ---------- report ----------

def test_claim_verdicts_and_records():
    cs = [report.Claim("a", "1", 1.0, True, "tol"), report.Claim("b", "1", 0.5, False, "tol", partly=True),
          report.Claim("c", "1", 0.1, False, "tol"), report.Claim("d", "1", None, None, "tol")]
    assert [c.verdict for c in cs] == ["reproduced", "partly", "not reproduced", "not run here"]
    recs = report.claims_records(cs)
    json.dumps(recs)
    assert recs[3]["verdict"] == "not run here"
    df = report.claims_frame(cs, "smoke")
    assert list(df["profile"]) == ["smoke"] * 4 and df.loc[0, "ours"] == "1"


# ---------- source hygiene ----------

def test_notebooks_in_nbs_carry_no_outputs():
    dirty = []
    for f in sorted((ROOT / "nbs").glob("*.ipynb")):
        nb = json.loads(f.read_text())
        if any(c.get("outputs") or c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code"):
            dirty.append(f.name)
    assert not dirty, f"run nbdev_clean: outputs in {dirty}"


def test_export_leaves_package_unchanged(tmp_path):
    "robbook/ is exactly what nbdev_export produces from nbs/."
    for name in ("settings.ini", "nbs"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, tmp_path / name)
    for init in (ROOT / "robbook").rglob("__init__.py"):  # package markers are seeded, not exported
        dst = tmp_path / "robbook" / init.relative_to(ROOT / "robbook")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(init, dst)
    nbdev_export = Path(sys.executable).parent / "nbdev_export"
    subprocess.run([str(nbdev_export)], cwd=tmp_path, check=True, capture_output=True, timeout=300)
    fresh = {p.relative_to(tmp_path / "robbook") for p in (tmp_path / "robbook").rglob("*.py")}
    have = {p.relative_to(ROOT / "robbook") for p in (ROOT / "robbook").rglob("*.py")}
    assert fresh == have, f"only in the export: {sorted(map(str, fresh - have))}; only in robbook/: {sorted(map(str, have - fresh))}"
    changed = [str(p) for p in fresh if (tmp_path / "robbook" / p).read_text() != (ROOT / "robbook" / p).read_text()]
    assert not changed, f"robbook/ differs from nbdev_export's output in {changed}: edit the notebooks, then export"
