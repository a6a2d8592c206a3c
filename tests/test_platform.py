"Platform checks: parameters and profiles, the run CLI's preprocessing, widgets, claims, source hygiene."
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from robbook import config, profiles, report, run, widgets
from robbook.config import ParameterError

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


def test_trained_since_lists_each_model_once_from_a_start():
    start = config.training_count()
    for key in ["a", "b", "a", "c"]:
        config.record_training({"key": key, "from_cache": key != "b"})
    assert config.training_count() == start + 4
    assert [e["key"] for e in config.trained_since(start)] == ["a", "b", "c"]       # first return of each key
    assert [e["key"] for e in config.trained_since(start + 2)] == ["a", "c"]
    assert config.trained_since(config.training_count()) == []


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
    style, *cells = out.cells  # a hidden first cell sets the book's figure style
    assert "book_style()" in style.source and style.metadata["tags"] == ["remove-cell"]
    assert [c.cell_type for c in cells] == ["code", "code", "markdown", "markdown"]
    assert cells[0].metadata["tags"] == ["remove-cell"]
    assert cells[1].metadata["tags"] == ["remove-input"] and cells[1].source == "print(1)"
    assert "loop()" in cells[2].source and "```python" in cells[2].source
    assert nb.cells[1].source.startswith("#| hide"), "preprocess must not modify its input"
    folded = run.preprocess(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("#| fold\nplot()")]))
    assert folded.cells[1].metadata["tags"] == ["hide-input"] and folded.cells[1].source == "plot()"
    assert run.preprocess(nb).cells[0].id == out.cells[0].id, "the style cell's id is stable (the page key depends on it)"


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


def test_value_rules_reject_senseless_overrides_and_pass_every_profile():
    for chapter, profs in profiles.PROFILES.items():
        for prof in profs:
            config.resolve(chapter, prof)                        # every profile value obeys PARAM_RULES
    assert config.param_rule("epochs") == config.param_rule("cs_epochs") == config.param_rule("n_train") == "int>=1"
    assert config.param_rule("eps_grid") == config.param_rule("cifar10_eps_l2") == "number>=0"
    for chapter, kw, fragment in [("kamath", {"epochs": -1}, "'epochs': -1"), ("kamath", {"epochs": 0}, "'epochs': 0"),
                                  ("moayeri", {"eps_grid": [0.1, -1.0]}, "item -1.0"),
                                  ("moayeri", {"cs_n_train": 0}, "integer >= 1"), ("demo", {"eps": -0.1}, "'eps'"),
                                  ("demo", {"seed": -3}, "'seed'")]:
        with pytest.raises(ParameterError, match="allowed values") as e:
            config.resolve(chapter, **kw)
        assert fragment in str(e.value), str(e.value)
    with pytest.raises(ParameterError, match=r"did you mean 'eps_grid'"):
        config.resolve("moayeri", epsgrid=[0.1])


def test_resolve_from_rejects_what_papermill_injected_beyond_the_chapter():
    injected = '# Parameters\nepsgrid = "notalist"\nn = 5\n'
    ns = {"In": ["", "profile = 'smoke'", injected], "n": 5, "epsgrid": "notalist"}
    with pytest.raises(ParameterError, match=r"unknown parameter\(s\) \['epsgrid'\] for chapter 'demo'"):
        config.resolve_from(ns, "demo")
    assert config.injected_parameters(ns) == ["epsgrid", "n"]
    assert config.resolve_from({"In": ["", '# Parameters\nn = 5\n'], "n": 5}, "demo").n == 5
    assert config.resolve_from({"n": 5, "other_global": 1}, "demo").n == 5          # outside papermill: as before


def _plain_papermill(nb, out, *params, cwd):
    import os
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("ROBBOOK_RESULTS", None)
    args = [x for k, v in params for x in ("-p", k, v)]
    return subprocess.run([sys.executable, "-m", "papermill", str(nb), str(out), *args, "-k", "python3", "--language", "python", "--no-progress-bar"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_plain_papermill_checks_parameters_like_robbook_run(tmp_path):
    root = _demo_book(tmp_path)
    nb = root / "nbs" / "01_demo.ipynb"
    r = _plain_papermill(nb, tmp_path / "a.ipynb", ("nn", "3"), cwd=root)
    assert r.returncode != 0 and "ParameterError" in r.stderr and "unknown parameter(s) ['nn']" in r.stderr
    r2 = subprocess.run([sys.executable, "-m", "robbook", "run", "demo", "--root", str(root), "-p", "nn", "3"],
                        capture_output=True, text=True, timeout=120)
    assert r2.returncode == 2 and "unknown parameter(s) ['nn'] for chapter 'demo'" in r2.stderr
    r = _plain_papermill(nb, tmp_path / "b.ipynb", ("n", "-1"), cwd=root)
    assert r.returncode != 0 and "parameter 'n': -1 is not allowed" in r.stderr
    out = nbformat.read(tmp_path / "b.ipynb", as_version=4)
    failed = [i for i, c in enumerate(out.cells) if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert failed and "resolve_from" in out.cells[failed[0]].source      # stopped at the config cell
    assert not (root / "results").exists()


def test_plain_papermill_results_are_git_ignored():
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    assert config.results_path.__doc__ and "results" in config.results_path.__doc__
    r = subprocess.run(["git", "check-ignore", "-q", "results/kamath.json"], cwd=ROOT)
    assert r.returncode == 0, "results/ (plain papermill's default results folder) must be git-ignored"


# ---------- transactional runs, profiles side by side ----------

def _demo_book(tmp_path):
    "A one-chapter book (the `demo` profile) whose chapter fails when eps >= 0.5."
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
    root = tmp_path / "book"
    (root / "nbs").mkdir(parents=True)
    (root / "_toc.yml").write_text("format: jb-book\nroot: executed/intro\nchapters:\n  - file: executed/01_demo\n")
    (root / "nbs" / "intro.md").write_text("# Intro\n")
    params = new_code_cell('profile = "smoke"\ndevice = "cpu"\ndata_root = None\nseed = 0\nresults_dir = None\n'
                           'n = None\neps = None')
    params.metadata["tags"] = ["parameters"]
    nbformat.write(new_notebook(cells=[
        new_markdown_cell("# Demo chapter\n\nA figure of nothing:"), params,
        new_code_cell("from robbook.config import resolve_from, start_run, finish_run\n"
                      "cfg = start_run(resolve_from(globals(), 'demo'), show=False)"),
        new_code_cell("assert cfg.eps < 0.5, 'eps too large for the demo'\nprint('n =', cfg.n)"),
        new_code_cell("import matplotlib.pyplot as plt\nplt.plot([0, 1]); plt.show()"),
        new_code_cell("finish_run(cfg, {'n': cfg.n, 'claims': [{'claim': 'c', 'verdict': 'reproduced'}]}, show=False)"),
    ]), root / "nbs" / "01_demo.ipynb")
    return root


def _no_errors(path):
    return not run.notebook_errors(nbformat.read(path, as_version=4))


def test_failed_run_leaves_the_good_copy_and_the_book_says_so(tmp_path):
    root = _demo_book(tmp_path)
    shown = run.execute_page("01_demo", profile="smoke", params={"device": "cpu"}, root=root, log=lambda *a: None)
    js = root / "executed" / "demo.json"
    good_nb, good_js = shown.read_bytes(), js.read_bytes()
    meta = nbformat.read(shown, as_version=4).metadata["robbook"]
    assert meta["status"] == "ok" and meta["profile"] == "smoke" and _no_errors(shown)
    assert (root / "executed" / "runs" / "smoke" / "01_demo.ipynb").exists()
    assert json.loads(good_js)["results"]["n"] == profiles.PROFILES["demo"]["smoke"]["n"]
    # the provenance holds no absolute path of this machine
    assert str(root) not in json.dumps(json.loads(good_js)["provenance"]["parameters"])
    # the image output got its alt text from the markdown before it
    img = [c for c in nbformat.read(shown, as_version=4).cells if "plt.plot" in c.source][0]
    assert img.metadata["mystnb"]["image"]["alt"].startswith("A figure of nothing")
    # the CLI re-run fails, says where the failed run is, and touches nothing of the good run
    r = subprocess.run([sys.executable, "-m", "robbook", "run", "demo", "--root", str(root), "--device", "cpu",
                        "-p", "eps", "0.9", "--force"], cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "eps too large" in r.stderr, r.stderr
    assert "executed/failed/01_demo.smoke+eps=0.9.ipynb" in r.stderr and "unchanged" in r.stderr
    assert (root / "executed" / "failed" / "01_demo.smoke+eps=0.9.ipynb").exists()
    assert shown.read_bytes() == good_nb and js.read_bytes() == good_js
    assert not (root / "executed" / ".tmp").exists() or not any((root / "executed" / ".tmp").iterdir())
    # the book build runs it again, fails, says which page and where, and keeps showing the good run
    logs = []
    with pytest.raises(SystemExit, match="01_demo.*eps too large") as e:
        run.build_book(profile="smoke", device="cpu", params={"eps": 0.9}, root=root, render=False, log=logs.append)
    assert "executed/failed/01_demo.smoke+eps=0.9.ipynb" in str(e.value)
    assert shown.read_bytes() == good_nb and js.read_bytes() == good_js and _no_errors(shown)
    # without the failing parameter the book builds from the good copy
    assert run.build_book(profile="smoke", execute="none", root=root, render=False, log=logs.append)


def test_book_never_shows_an_error_page(tmp_path):
    root = _demo_book(tmp_path)
    with pytest.raises(SystemExit, match="01_demo"):
        run.build_book(profile="smoke", params={"eps": 0.9}, root=root, render=False, log=lambda *a: None)
    shown = root / "executed" / "01_demo.ipynb"
    nb = nbformat.read(shown, as_version=4)
    assert nb.metadata["robbook"]["status"] == "placeholder" and _no_errors(shown)
    assert "failed to execute" in nb.cells[0].source and "eps too large" in nb.cells[0].source
    # an executed copy that holds an error output (e.g. from an older robbook) is never rendered either
    run.execute_page("01_demo", params={"device": "cpu"}, root=root, log=lambda *a: None)
    bad = nbformat.read(shown, as_version=4)
    bad.cells[-1].outputs = [nbformat.v4.new_output("error", ename="KeyError", evalue="'std_acc'", traceback=[])]
    nbformat.write(bad, shown)
    assert run.select_copies(["01_demo"], "smoke", root, log=lambda *a: None) == []
    assert _no_errors(shown), "the good run must replace a shown copy holding an error"


def test_profiles_side_by_side(tmp_path):
    root = _demo_book(tmp_path)
    quiet = lambda *a: None
    for prof in ("smoke", "quick"):
        run.execute_page("01_demo", profile=prof, params={"device": "cpu"}, root=root, log=quiet)
    shown, js = root / "executed" / "01_demo.ipynb", root / "executed" / "demo.json"
    assert nbformat.read(shown, as_version=4).metadata["robbook"]["profile"] == "quick"  # the latest run
    run.build_book(profile="smoke", execute="none", root=root, render=False, log=quiet)
    assert nbformat.read(shown, as_version=4).metadata["robbook"]["profile"] == "smoke"
    assert json.loads(js.read_text())["provenance"]["profile"] == "smoke", "notebook and JSON move together"
    logs = []
    run.build_book(profile="full", execute="none", root=root, render=False, log=logs.append)
    assert any("no 'full' run here" in l for l in logs)
    run.build_book(profile="quick", execute="none", root=root, render=False, log=quiet)
    assert json.loads(js.read_text())["results"]["n"] == profiles.PROFILES["demo"]["quick"]["n"]
    # an up-to-date run is reused, not executed again
    logs = []
    run.execute_page("01_demo", profile="smoke", params={"device": "cpu"}, root=root, log=logs.append)
    assert any("reused" in l for l in logs) and json.loads(js.read_text())["provenance"]["profile"] == "smoke"
    # a forced re-run of the same key is what the book shows afterwards (notebook and JSON together)
    before = json.loads(js.read_text())["provenance"]["started"]
    time.sleep(1.1)
    run.execute_page("01_demo", profile="smoke", params={"device": "cpu"}, root=root, force=True, log=quiet)
    good = json.loads((root / "executed" / "runs" / "smoke" / "demo.json").read_text())["provenance"]["started"]
    assert good != before and json.loads(js.read_text())["provenance"]["started"] == good


def test_page_jobs_share_the_cores_on_a_cpu_and_run_one_page_on_a_gpu(monkeypatch):
    if hasattr(run.os, "sched_getaffinity"):      # a container's cpuset, not the host's core count
        monkeypatch.setattr(run.os, "cpu_count", lambda: 64)
        monkeypatch.setattr(run.os, "sched_getaffinity", lambda pid: {0, 1, 2})
        assert run.page_jobs("cpu", 20) == (3, 1)
        monkeypatch.undo()
    assert run.page_jobs("cpu", 20, cpus=2) == (2, 1)          # two pages, one thread each
    assert run.page_jobs("cpu", 20, cpus=16) == (4, 4)
    assert run.page_jobs("cpu", 1, cpus=16) == (1, 16)         # never more workers than pages
    assert run.page_jobs("cuda", 20, cpus=16) == (1, None)     # the pages would share the GPU
    assert run.page_jobs("cpu", 20, jobs=3, cpus=16) == (3, 5)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(run.ParameterError, match="jobs must be a positive integer"):
            run.page_jobs("cpu", 5, jobs=bad)


@pytest.mark.slow
def test_pages_execute_side_by_side_with_their_share_of_threads(tmp_path):
    "Two pages in worker processes, each kernel with cores // jobs torch threads; a failing page is reported, not fatal."
    from nbformat.v4 import new_code_cell, new_notebook
    root = tmp_path / "book"
    (root / "nbs").mkdir(parents=True)
    (root / "nbs" / "intro.md").write_text("# Intro\n")
    names = ["30_one", "31_two", "32_bad"]
    (root / "_toc.yml").write_text("format: jb-book\nroot: executed/intro\nchapters:\n"
                                   + "".join(f"  - file: executed/{n}\n" for n in names))
    for n in names[:2]:
        nbformat.write(new_notebook(cells=[new_code_cell(
            "import os, torch\nprint('pid', os.getpid(), 'threads', torch.get_num_threads())")]), root / "nbs" / f"{n}.ipynb")
    nbformat.write(new_notebook(cells=[new_code_cell("raise ValueError('page 32 breaks')")]), root / "nbs" / "32_bad.ipynb")
    logs = []
    with pytest.raises(SystemExit, match="32_bad.*page 32 breaks"):
        run.build_book(profile="smoke", device="cpu", root=root, render=False, jobs=2, log=logs.append)
    assert any("2 pages at a time" in l for l in logs), logs
    want = run.page_jobs("cpu", 3, jobs=2)[1]
    pids = set()
    for n in names[:2]:
        cell = [c for c in nbformat.read(root / "executed" / f"{n}.ipynb", as_version=4).cells if "threads" in c.source][0]
        out = "".join(o.get("text", "") for o in cell.outputs)
        pid, threads = out.split()[1], int(out.split()[3])
        assert threads == want, (n, out)
        pids.add(pid)
    assert len(pids) == 2 and any("32_bad: FAILED" in l for l in logs)
    with pytest.raises(run.ParameterError, match="jobs"):
        run.build_book(profile="smoke", device="cpu", root=root, render=False, jobs=0, log=logs.append)


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


def test_knobs_name_their_knobs_in_words_and_leave_a_frame_for_pages_without_javascript(monkeypatch):
    import IPython.display
    import ipywidgets as W
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj.data))
    w = widgets.knobs(_fig, {"a": [1, 2, 3], "b": ["x", "y"]}, labels={"a": "budget ε", "c": "unused"},
                      live=False, progress=False)
    a, b = w.children[0].children
    assert isinstance(a, W.SelectionSlider) and a.description == "budget ε"
    assert isinstance(b, W.ToggleButtons) and b.description == "b", "two values: toggle buttons; no label: the name"
    assert shown[0].startswith("<noscript>") and 'alt="The figure at budget ε = 2, b = y."' in shown[0]
    widgets.knobs(_fig, {"a": [1], "b": [2]}, alt="A line.", live=False, progress=False)
    assert 'alt="A line."' in shown[1]


def test_live_knobs_recompute():
    seen = []

    def fn(a, b):
        seen.append((a, b))
        return _fig(a, b)

    w = widgets.knobs(fn, {"a": [0.0, 1.0], "b": [1, 2]}, live=True)
    ctrl = w.children[0].children
    ctrl[0].value = 0.37
    assert seen[-1][0] == pytest.approx(0.37), "live sliders recompute at values off the grid"


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


def test_bench_cli_passes_device_and_compile_and_rejects_the_rest(monkeypatch, capsys):
    "python -m robbook bench WHAT [--device D] [--compile]: the options reach the benchmark; others are refused."
    import robbook.bench
    from robbook.bench import main as bench_main
    calls = []
    monkeypatch.setattr(robbook.bench, "attack_benchmark",
                        lambda device="cpu", compile=False: calls.append(("attacks", dict(device=device, compile=compile))))
    monkeypatch.setattr(robbook.bench, "train_benchmark", lambda device=None, compile=False: calls.append(("train", {})))
    assert bench_main(["attacks", "--device", "cpu", "--compile"]) == 0
    assert bench_main(["train"]) == 0
    assert calls == [("attacks", {"device": "cpu", "compile": True}), ("train", {})]
    assert bench_main(["attacks", "--fast"]) == 2
    assert "--fast" in capsys.readouterr().err
    assert bench_main(["nope"]) == 2


def test_provenance_box_shows_parameter_values_readably():
    "The box rounds floats for reading (4/255 → 0.0156863) while the results JSON keeps exact values."
    from robbook.config import _short
    assert _short([4 / 255, 0.3137254901960784]) == "[0.0156863, 0.313725]"
    assert _short({"depth": 34, "rate": 0.1}) == "{'depth': 34, 'rate': 0.1}"
    assert _short(("a", 2)) == "('a', 2)" and _short((0.5,)) == "(0.5,)" and _short(None) == "None"


# ---------- issue #20: runs side by side, nothing lost, nothing shown under the wrong name ----------

def _demo_book_with_data_switch(tmp_path):
    "The demo book whose claim is 'not run here' when $DEMO_ABSENT is set (a run that completes less)."
    root = _demo_book(tmp_path)
    p = root / "nbs" / "01_demo.ipynb"
    nb = nbformat.read(p, as_version=4)
    nb.cells[-1].source = ("import os\nv = 'not run here' if os.environ.get('DEMO_ABSENT') else 'reproduced'\n"
                           "finish_run(cfg, {'n': cfg.n, 'claims': [{'claim': 'c', 'verdict': v}]}, show=False)")
    nbformat.write(nb, p)
    return root


def _started(path):
    return json.loads(Path(path).read_text())["provenance"]["started"]


def test_results_dir_parameter_moves_with_its_notebook(tmp_path, monkeypatch):
    "Finding 1: with `-p results_dir X` the book shows this run's JSON beside this run's notebook."
    root, quiet = _demo_book(tmp_path), (lambda *a: None)
    monkeypatch.setattr(report, "chapter_pages", lambda root: {"demo": "01_demo"})
    run.execute_page("01_demo", params={"device": "cpu"}, root=root, log=quiet)
    time.sleep(1.1)
    res = tmp_path / "res"
    shown = run.execute_page("01_demo", params={"device": "cpu", "results_dir": str(res)}, root=root, force=True,
                             log=quiet)
    js = root / "executed" / "demo.json"
    assert _started(js) == _started(res / "demo.json")
    assert nbformat.read(shown, as_version=4).metadata["robbook"]["parameters"]["results_dir"] == str(res)
    assert report.collect_results(root)[0]["started"] == _started(res / "demo.json")


def test_forced_rerun_in_the_same_second_is_installed(tmp_path, monkeypatch):
    "Finding 2: 'already installed' is decided by the run's identity, not by a one-second timestamp."
    root, quiet = _demo_book(tmp_path), (lambda *a: None)
    monkeypatch.setattr(time, "strftime", lambda *a, **k: "2020-01-01 00:00:00")
    run.execute_page("01_demo", params={"device": "cpu"}, root=root, log=quiet)
    first = _started(root / "executed" / "demo.json")
    time.sleep(1.1)
    run.execute_page("01_demo", params={"device": "cpu"}, root=root, force=True, log=quiet)
    good = _started(root / "executed" / "runs" / "smoke" / "demo.json")
    assert good != first and _started(root / "executed" / "demo.json") == good


def test_runs_with_overrides_live_side_by_side_and_the_book_shows_the_chosen_one(tmp_path, monkeypatch):
    root, quiet = _demo_book(tmp_path), (lambda *a: None)
    monkeypatch.setattr(report, "chapter_pages", lambda root: {"demo": "01_demo"})
    shown, js = root / "executed" / "01_demo.ipynb", root / "executed" / "demo.json"
    run.execute_page("01_demo", params={"device": "cpu"}, root=root, log=quiet)
    plain = shown.read_bytes()
    logs = []
    run.execute_page("01_demo", params={"device": "cpu", "eps": 0.25}, root=root, log=logs.append)
    runs = root / "executed" / "runs"
    assert (runs / "smoke" / "01_demo.ipynb").exists() and (runs / "smoke+eps=0.25" / "01_demo.ipynb").exists()
    assert shown.read_bytes() == plain, "a run with overrides is not shown unless picked"
    assert any("smoke+eps=0.25" in l and "--run demo=smoke+eps=0.25" in l for l in logs), logs
    run.build_book(profile="smoke", execute="none", runs={"demo": "smoke+eps=0.25"}, root=root, render=False, log=quiet)
    meta = nbformat.read(shown, as_version=4).metadata["robbook"]
    assert meta["run"] == "smoke+eps=0.25" and json.loads(js.read_text())["provenance"]["overrides"] == {"eps": 0.25}
    recs = {r["run"]: r for r in report.collect_results(root)}
    assert recs["smoke+eps=0.25"]["shown"] and not recs["smoke"]["shown"]
    assert recs["smoke+eps=0.25"]["overrides"] == {"eps": 0.25} and recs["smoke"]["overrides"] == {}
    frame = report.scoreboard_frame(root)
    assert set(frame["run"]) == {"smoke", "smoke+eps=0.25"} and "eps=0.25" in " ".join(frame["overrides"])
    run.build_book(profile="smoke", execute="none", root=root, render=False, log=quiet)
    assert nbformat.read(shown, as_version=4).metadata["robbook"]["run"] == "smoke"
    with pytest.raises(ParameterError, match="smoke\\+eps=0.25"):        # a run that is not there: say which are
        run.build_book(profile="smoke", execute="none", runs={"demo": "quick"}, root=root, render=False, log=quiet)
    # `run --show` makes a run with overrides the shown one at once; the listing names every run
    r = subprocess.run([sys.executable, "-m", "robbook", "run", "demo", "--root", str(root), "--device", "cpu",
                        "-p", "eps", "0.25", "--show"], cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert nbformat.read(shown, as_version=4).metadata["robbook"]["run"] == "smoke+eps=0.25"
    r = subprocess.run([sys.executable, "-m", "robbook", "runs", "--root", str(root)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "smoke+eps=0.25" in r.stdout and "smoke " in r.stdout + " ", r.stdout + r.stderr


def test_a_run_that_completes_less_never_replaces_a_complete_run(tmp_path, monkeypatch):
    "The issue's data-loss case: a re-run with absent data keeps the complete run and the page the book shows."
    root, quiet = _demo_book_with_data_switch(tmp_path), (lambda *a: None)
    shown, js = root / "executed" / "01_demo.ipynb", root / "executed" / "demo.json"
    run.execute_page("01_demo", params={"device": "cpu"}, root=root, log=quiet)
    good_nb, good_js = shown.read_bytes(), js.read_bytes()
    kept = (root / "executed" / "runs" / "smoke" / "demo.json").read_bytes()
    monkeypatch.setenv("DEMO_ABSENT", "1")
    logs = []
    run.execute_page("01_demo", params={"device": "cpu"}, root=root, force=True, log=logs.append)
    assert shown.read_bytes() == good_nb and js.read_bytes() == good_js
    assert (root / "executed" / "runs" / "smoke" / "demo.json").read_bytes() == kept
    lesser = [p for p in (root / "executed" / "runs").iterdir() if p.name.startswith("smoke.lesser-")]
    assert len(lesser) == 1 and (lesser[0] / "demo.json").exists(), "the lesser run is kept under its own name"
    assert any("completes less" in l for l in logs), logs
    run.build_book(profile="smoke", execute="none", root=root, render=False, log=quiet)
    assert shown.read_bytes() == good_nb and js.read_bytes() == good_js


def test_a_dataset_asked_for_by_name_must_be_there(tmp_path):
    "`-p mnist_data mnist` with no MNIST stops before anything runs, with every place looked in and the fix."
    empty = tmp_path / "data"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as e:
        run.check_requested_data("tsipras", {"mnist_data": "mnist", "data_root": str(empty)})
    first = str(e.value).splitlines()[0]
    assert "'mnist' not found" in first and str(empty / "MNIST" / "raw") in first
    assert "yann.lecun.com" in str(e.value)
    with pytest.raises(FileNotFoundError, match="imagenet"):
        run.check_requested_data("tsipras", {"imagenet_root": str(empty / "imagenet")})
    with pytest.raises(FileNotFoundError, match="cifar10"):
        run.check_requested_data("tsipras", {"deep_slots": ["mnist", "cifar10"], "data_root": str(empty)})
    run.check_requested_data("tsipras", {"linear_eps": 0.1, "data_root": str(empty)})   # no data named: nothing to check
    # the slot `mnist` is the MNIST-like slot (its data set is `mnist_data`), not the data set MNIST
    run.check_requested_data("tsipras", {"deep_slots": ["mnist"], "data_root": str(empty)})
    book = tmp_path / "book"     # a checkout holding the chapter: what stops the CLI is the data check, nothing else
    (book / "nbs").mkdir(parents=True)
    shutil.copyfile(ROOT / "nbs" / "01_tsipras.ipynb", book / "nbs" / "01_tsipras.ipynb")
    (book / "nbs" / "intro.md").write_text("# Intro\n")
    (book / "_toc.yml").write_text("format: jb-book\nroot: executed/intro\nchapters:\n  - file: executed/01_tsipras\n")
    r = subprocess.run([sys.executable, "-m", "robbook", "run", "tsipras", "-p", "mnist_data", "mnist",
                        "--data-root", str(empty), "--root", str(book)], cwd=book,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "'mnist' not found" in r.stderr.splitlines()[0], r.stderr[-2000:]
    assert not list((book / "executed").rglob("*.ipynb")), "nothing was executed"


def test_dataset_error_names_every_place_on_its_first_line(tmp_path):
    "Chapters show the first line of a data error: it must list the places looked in."
    from robbook.data import load
    with pytest.raises(FileNotFoundError) as e:
        load("mnist", root=tmp_path, download=False)
    first = str(e.value).splitlines()[0]
    assert "not found" in first and all(str(tmp_path / s) in first for s in ("MNIST/raw", "MNIST", "mnist"))


# ---------- issue #20 mutation check: run names, the lesser-run rule, the shown run ----------

def test_run_names_say_every_override_the_seed_and_the_device():
    name = lambda **kw: config.run_name(config.resolve("tsipras", profile="smoke", **kw))
    assert name() == name(device="cpu") == name(device="auto") == name(data_root="/d", results_dir="/r") == "smoke"
    assert name(linear_eps=0.1) == "smoke+linear_eps=0.1" and name(seed=1) == "smoke+seed=1"
    assert name(device="cuda:1") == "smoke@cuda_1"
    assert name(seed=2, linear_eps=0.1, device="mps") == "smoke+linear_eps=0.1+seed=2@mps"
    a = [0.001 * i for i in range(1, 30)]                     # a long override: cut, and told apart by a hash
    long_a, long_b = name(linear_topk=a), name(linear_topk=a[:-1] + [0.5])
    assert long_a != long_b and max(len(long_a), len(long_b)) <= 100 and long_a.startswith("smoke+linear_topk=")


def test_completes_less_compares_the_claims_checked(tmp_path):
    def js(name, *claims):
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps({"results": {"claims": [{"id": c, "verdict": v} for c, v in claims]}}))
        return p
    full = js("full", ("x", "reproduced"), ("y", "not reproduced"))
    other = js("other", ("x", "reproduced"), ("z", "inconclusive"))        # as many claims, but not y
    fewer = js("fewer", ("x", "reproduced"), ("y", "not run here"))
    assert run.coverage(full) == {"x", "y"} and run.coverage(fewer) == {"x"}
    assert run.completes_less(fewer, full) and not run.completes_less(full, fewer)
    assert run.completes_less(other, full) and not run.completes_less(full, full)
    assert run.completes_less(tmp_path / "absent.json", full) and not run.completes_less(full, tmp_path / "absent.json")
    # without ids a claim is its text, numbers aside: another run's step count is the same claim, another claim is not
    texts = lambda name, *t: (tmp_path / f"{name}.json").write_text(json.dumps(
        {"results": {"claims": [{"claim": c, "verdict": "reproduced"} for c in t]}})) and tmp_path / f"{name}.json"
    a = texts("a", "PGD up to 200 steps lowers it by at most 2 points", "D_R beats D_NR at eps = 0.25")
    b = texts("b", "PGD up to 100 steps lowers it by at most 2 points", "D_R beats D_NR at eps = 1,000")
    c = texts("c", "PGD up to 100 steps lowers it by at most 2 points", "D_R loses to D_NR at eps = 0.25")
    assert not run.completes_less(b, a) and not run.completes_less(a, b) and run.completes_less(c, a)


def test_the_book_shows_the_plain_run_that_checks_most_claims(tmp_path, monkeypatch):
    """Two runs of `smoke` without overrides (here: on two devices): the one that checks fewer claims is kept,
    not shown, and the book keeps the complete one; a lesser run is never taken for the profile's run."""
    root, quiet = _demo_book_with_data_switch(tmp_path), (lambda *a: None)
    shown, runs = root / "executed" / "01_demo.ipynb", root / "executed" / "runs"
    uid = lambda: nbformat.read(shown, as_version=4).metadata["robbook"]["run_uid"]
    run.execute_page("01_demo", params={"device": "cpu"}, root=root, log=quiet)
    complete = uid()
    monkeypatch.setenv("DEMO_ABSENT", "1")
    real_id = run.run_id
    monkeypatch.setattr(run, "run_id", lambda page, profile, params: real_id(page, profile, params) + "@cuda")
    logs = []     # forced: the same notebook and parameters, so the same execution key, as on another device
    run.execute_page("01_demo", params={"device": "cpu"}, root=root, force=True, log=logs.append)
    assert (runs / "smoke@cuda" / "demo.json").exists() and uid() == complete
    assert any("completes less than the run the book shows" in l for l in logs), logs
    run.build_book(profile="smoke", execute="none", root=root, render=False, log=quiet)
    assert uid() == complete, "of two plain smoke runs the book shows the one that checks more claims"
    shutil.copytree(runs / "smoke@cuda", runs / "smoke.lesser-20200101-000000")   # what a lesser re-run leaves
    for name in ("smoke", "smoke@cuda"):                       # the plain runs deleted by hand
        shutil.rmtree(runs / name)
    run.build_book(profile="smoke", execute="none", root=root, render=False, log=quiet)
    assert uid() == complete, "a lesser run must not replace the shown run as if it were the smoke run"


# ---------- tiny runs ----------

def test_tiny_values_cut_sizes_and_keep_the_grids():
    """A tiny run keeps every grid that shapes an output (same length) and cuts sizes and step counts."""
    for chapter in ("tsipras", "kamath", "ilyas", "moayeri"):
        for prof in ("quick", "full"):
            base, tiny = profiles.PROFILES[chapter][prof], config.resolve(chapter, prof, tiny=True)
            for k, v in profiles.tiny_values(chapter, prof).items():
                assert tiny[k] == v
                if isinstance(base[k], list):
                    assert len(v) == len(base[k]), (chapter, prof, k)
                elif isinstance(base[k], (int, float)) and not isinstance(base[k], bool) and base[k]:  # 0 = all
                    assert v <= base[k], (chapter, prof, k)       # never bigger than the profile
            assert config.run_name(tiny) == f"{prof}+tiny=True"
    # an explicit override still wins over the tiny value, and names the run
    cfg = config.resolve("kamath", "full", tiny=True, n_train=100)
    assert cfg.n_train == 100 and config.run_name(cfg) == "full+n_train=100+tiny=True"


def test_a_tiny_run_is_kept_labelled_and_never_shown(tmp_path):
    root = _demo_book(tmp_path)
    run.execute_page("01_demo", profile="quick", params={"device": "cpu"}, root=root, log=lambda *a: None)
    shown = (root / "executed" / "01_demo.ipynb").read_bytes()
    logs = []
    run.execute_page("01_demo", profile="quick", params={"device": "cpu", "tiny": True}, root=root, log=logs.append)
    kept = root / "executed" / "runs" / "quick+tiny=True"
    prov = json.loads((kept / "demo.json").read_text())["provenance"]
    assert prov["parameters"]["tiny"] is True and prov["parameters"]["n"] == profiles.TINY["demo"]["n"]
    assert (root / "executed" / "01_demo.ipynb").read_bytes() == shown        # the shown run is untouched
    assert any("never shows a tiny run" in str(m) for m in logs)
    with pytest.raises(config.ParameterError, match="tiny run"):
        run.select_copies(["01_demo"], "quick", root=root, log=lambda *a: None, runs={"demo": "quick+tiny=True"})
    r = subprocess.run([sys.executable, "-m", "robbook", "run", "demo", "--root", str(root), "--tiny", "--show"],
                       cwd=root, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "never shows one" in r.stderr
    # the scoreboard leaves tiny runs out: their numbers are not results
    from robbook.report import collect_results
    assert all(r_["run"] != "quick+tiny=True" for r_ in collect_results(root))


def test_two_processes_running_the_same_run_take_turns(tmp_path):
    """Two `python -m robbook run` of the same chapter and run name at once (two terminals): the second waits for
    the first and reuses its run instead of failing on the shared `.tmp` folder."""
    root = _demo_book(tmp_path)
    cmd = [sys.executable, "-m", "robbook", "run", "demo", "--root", str(root), "--device", "cpu"]
    procs = [subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ran = [o for o in outs if "executing with" in o]
    waited = [o for o in outs if "another process is executing run 'smoke'" in o]
    assert len(ran) == 1 and len(waited) == 1 and ran != waited, outs     # whichever came second waited
    assert "up to date" in waited[0], waited
    assert _no_errors(root / "executed" / "runs" / "smoke" / "01_demo.ipynb")
    assert not list((root / "executed").glob("failed/*"))
