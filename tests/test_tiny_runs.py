"""Every chapter executed through papermill with the structure of `quick` and of `full` and every size cut (issue #23).

A tiny run (`python -m robbook run CHAPTER --profile full --tiny`) keeps a profile's slots, models, data loaders,
attacks, evaluation versions, plots and claims and cuts every size and step count (`robbook.profiles.TINY`, widths by
`TINY_ARCH_KWARGS`). Here each chapter runs that way on CPU, reading data generated in each data set's real on-disk
format (`tests/fakedata.py`: MNIST IDX, CIFAR-10 pickles, an ImageNet folder, Ilyas et al.'s released datasets,
`robustness` checkpoints, ImageNet-C, ObjectNet, RIVAL10, Salient ImageNet, ImageNet-9 and Waterbirds); the Ilyas
chapter's Restricted ImageNet models go through torchrun with two CPU processes (gloo). The checks: the run succeeds
and is kept as a tiny run (never shown); every claim has a row; a claim is "not run here" only for a setting of the
profile, never for absent data; the models the run trained are exactly `robbook.launch.training_plan`'s for the same
values (so the estimates count what runs). Numbers of a tiny run are not results and nothing here checks them."""
import collections
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from fakedata import tiny_run_params, write_all
from robbook import config, launch, run

pytestmark = pytest.mark.slow

ROOT = run.repo_root()
PAGES = {"tsipras": "01_tsipras", "ilyas": "02_ilyas", "kamath": "03_kamath", "moayeri": "04_moayeri"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    "Every data set the four chapters read under `quick` and `full`, generated."
    return write_all(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    "A checkout view whose `executed/` is temporary: the chapters' sources are the repository's own."
    r = tmp_path_factory.mktemp("book")
    shutil.copy(ROOT / "_toc.yml", r / "_toc.yml")
    (r / "nbs").symlink_to(ROOT / "nbs")
    return r


def params_for(chapter: str, profile: str, data) -> dict:
    "The tiny run's parameters: every data set the profile reads, pointed at the generated copies."
    p = {"device": "cpu", "tiny": True, **tiny_run_params(chapter, profile, data)}
    if (chapter, profile) == ("ilyas", "quick"):     # the Restricted ImageNet models through torchrun, 2 CPU processes
        p["nproc"] = 2
    return p


def _models(entries, with_n=True) -> collections.Counter:
    "The trained models as a multiset of (model, method, epochs, shape[, training-set size])."
    return collections.Counter((m["model"], m["method"], int(m["epochs"]), tuple(m["shape"]))
                               + ((int(m["n"]),) if with_n else ()) for m in entries if m["method"] != "build")


RUNS = [(c, p) for c in PAGES for p in ("quick", "full")]
# seconds of each tiny run on one thread (measured on a 2-core machine, both workers busy): the order to start them
SECONDS = {("tsipras", "full"): 125, ("moayeri", "full"): 125, ("kamath", "full"): 110, ("ilyas", "quick"): 100,
           ("kamath", "quick"): 95, ("moayeri", "quick"): 95, ("ilyas", "full"): 85, ("tsipras", "quick"): 45}


@pytest.fixture(scope="module")
def tiny_runs(data, book, tmp_path_factory):
    """All eight tiny runs, through the command line a user types (`python -m robbook run ... --tiny`), two at a time
    with one thread each (2 cores), each with a model cache of its own so that every model trains. Returns
    {(chapter, profile): (params, completed process, seconds)}."""
    caches = tmp_path_factory.mktemp("caches")

    def one(cp):
        chapter, profile = cp
        params = params_for(chapter, profile, data)
        cmd = [sys.executable, "-m", "robbook", "run", chapter, "--profile", profile, "--tiny", "--root", str(book),
               "--device", "cpu", "--data-root", params["data_root"]]
        for k, v in params.items():
            if k not in ("device", "data_root", "tiny"):
                cmd += ["-p", k, str(v)]
        env = {**os.environ, "ROBBOOK_CACHE": str(caches / f"{chapter}-{profile}"), "OMP_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1"}
        t0 = time.time()
        proc = subprocess.run(cmd, cwd=book, env=env, capture_output=True, text=True, timeout=1800)
        return cp, (params, proc, time.time() - t0)

    with ThreadPoolExecutor(max_workers=2) as pool:
        # longest first, so that the two workers finish together
        done = dict(pool.map(one, sorted(RUNS, key=lambda cp: -SECONDS[cp])))
    print("tiny runs, seconds each (one thread, two at a time):",
          ", ".join(f"{c} {p} {s:.0f}" for (c, p), (_, _, s) in done.items()))    # shown with pytest -s
    return done


@pytest.mark.parametrize("chapter,profile", RUNS)
def test_tiny_run_has_the_profiles_structure(chapter, profile, tiny_runs, book):
    params, proc, seconds = tiny_runs[(chapter, profile)]
    assert proc.returncode == 0, f"{chapter} {profile} tiny run failed after {seconds:.0f} s:\n{proc.stderr[-3000:]}"
    rid = run.run_id(PAGES[chapter], profile, params)
    P = run.run_paths(PAGES[chapter], rid, book)
    assert P["good"].exists() and not P["shown"].exists(), "a tiny run is kept and never shown"
    assert "the book does not show it (a tiny run)" in proc.stdout
    out = json.loads(P["good_json"].read_text())
    res, prov = out["results"], out["provenance"]
    assert prov["parameters"]["tiny"] is True and prov["overrides"].get("tiny") is True

    cov = res["coverage"]
    assert cov["with a row"] == cov["main claims"] > 0, "every main claim has a row in the claims table"
    provided = [k for k in params if k not in ("device", "tiny", "nproc")]
    for c in res["claims"]:
        if c["verdict"] == "not run here":          # only for a setting of the profile, never for its data
            why = c.get("not_run") or ""
            assert "absent" not in why and not any(k in why for k in provided), \
                f"{chapter} {profile}: {c['claim']!r} did not run although its data was provided: {why}"

    cfg = config.resolve(chapter, profile, tiny=True, **{k: v for k, v in params.items()
                                                          if k not in ("device", "data_root", "tiny")})
    without = () if params.get("imagenet_root") else tuple(launch.OPTIONAL_SLOTS)   # those slots need their data
    plan = launch.training_plan(chapter, profile, without, params=dict(cfg))
    assert _models(prov["trained"], False) == _models(plan, False), "the models trained are the ones the estimate counts"
    sized = [m for m in plan if not m.get("what", "").startswith("released")]   # the release is CIFAR-10's size
    assert not _models(sized) - _models(prov["trained"]), "and on the training-set sizes it counts"
    launched = [m["world_size"] for m in prov["trained"] if m["model"].startswith("imagenet_") or chapter != "ilyas"]
    assert launched and set(launched) == {params.get("nproc", 1)}, "nproc processes trained each launched model"
