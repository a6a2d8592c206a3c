"""Tests of robbook.launch: parameter checks, data specs, the torchrun command line, and real
2-process Gloo runs through the launcher (equal to one process, failures reported, kills resumed)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import robbook.launch as L
import robbook.train as T
import robbook.train.loop as TL
from robbook.config import ParameterError
from robbook.train import TrainConfig, train
from train_helpers.easy import easy_data, weights_digest, without_time, write_folder

TESTS = Path(__file__).parent


@pytest.mark.parametrize("kw,name", [
    (dict(nproc=0), "nproc"), (dict(nproc=1.5), "nproc"), (dict(nnodes=0), "nnodes"),
    (dict(nnodes=2), "rdzv_endpoint"), (dict(nnodes=2, rdzv_endpoint="node0"), "rdzv_endpoint"),
    (dict(nnodes=2, rdzv_endpoint="node0:99999"), "rdzv_endpoint"), (dict(launcher="slurm"), "launcher"),
    (dict(launcher="inprocess", nproc=2), "launcher"), (dict(nproc=3, device="cpu", batch_size=64), "nproc"),
    (dict(nproc=2, device="mps"), "device"),
])
def test_bad_launch_parameters_are_named(kw, name):
    with pytest.raises(ParameterError, match=f"parameter '{name}'") as e:
        L.check_launch(**kw)
    assert "allowed values" in str(e.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_more_processes_than_gpus_is_rejected():
    with pytest.raises(ParameterError, match="parameter 'nproc'.*GPU"):
        L.check_launch(nproc=2, device="cuda")


def test_launcher_choice():
    assert L.check_launch() == "inprocess" and L.check_launch(launcher="torchrun") == "torchrun"
    assert L.check_launch(nproc=2, device="cpu") == "torchrun"
    assert L.check_launch(nproc=4, nnodes=2, rdzv_endpoint="10.0.0.1:29500", device="cpu", batch_size=64) == "torchrun"


def test_fit_rejects_before_anything_starts(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: started.append(a))
    monkeypatch.setattr(TL, "_train_loop", lambda *a, **k: started.append(a))
    c = TrainConfig(model="linear", num_classes=4, batch_size=64)
    spec = {"kind": "load", "name": "fashion_mnist"}
    for kw, name in [(dict(nproc=3), "nproc"), (dict(nnodes=2, nproc=2), "rdzv_endpoint"),
                     (dict(launcher="torchrun"), "spec"), (dict(launcher="inprocess", nproc=2), "launcher")]:
        with pytest.raises(ParameterError, match=name):
            L.fit(c, easy_data(64), spec=None if name == "spec" else spec, device="cpu", cache_dir=tmp_path, **kw)
    with pytest.raises(ParameterError, match="'data'"):
        L.fit(c, spec={"kind": "imagenet", "root": "/x", "colour": 1}, nproc=2, device="cpu", cache_dir=tmp_path)
    assert not started and not any(tmp_path.iterdir())


def test_torchrun_command_line(tmp_path):
    job = tmp_path / "job.json"
    job.write_text("{}")
    cmd = L.torchrun_command(job, nproc=4, python="py")
    assert cmd == ["py", "-m", "torch.distributed.run", "--nproc-per-node", "4", "--standalone",
                   "-m", "robbook", "train", str(job), "--quiet"]
    cmd = L.torchrun_command(job, nproc=8, nnodes=2, rdzv_endpoint="node0:29500", python="py", log_dir="logs")
    i = cmd.index("--nnodes")
    assert cmd[i:i + 6] == ["--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", "node0:29500"]
    assert cmd[cmd.index("--rdzv-id") + 1].startswith("robbook-") and "--standalone" not in cmd
    assert cmd[cmd.index("--log-dir") + 1] == "logs" and cmd[cmd.index("--redirects") + 1] == "3"
    assert cmd[-4:] == ["robbook", "train", str(job), "--quiet"]


def test_data_specs(tmp_path):
    assert L.parse_data("fashion_mnist") == {"kind": "load", "name": "fashion_mnist", "split": "train"}
    assert L.parse_data("fashion_mnist:test")["split"] == "test"
    assert L.parse_data("restricted_imagenet=/d,size=224,train=True,n=1000,seed=3") == {
        "kind": "restricted_imagenet", "root": "/d", "size": 224, "train": True, "subsets": [[1000, 3]]}
    assert L.parse_data('{"kind": "folder", "path": "/p"}') == {"kind": "folder", "path": "/p"}
    with pytest.raises(ParameterError, match="'data'"):
        L.parse_data("folder=/p,sise=3")
    root = write_folder(tmp_path / "f", easy_data(40, 0))
    ds = L.load_data({"kind": "folder", "path": str(root), "mode": "L", "subsets": [[30, 0], [10, 1]]})
    assert len(ds) == 10 and ds.shape == (1, 8, 8)
    with pytest.raises(FileNotFoundError, match="imagenet"):
        L.load_data({"kind": "restricted_imagenet", "root": str(tmp_path / "nowhere")})


def test_make_job_checks_the_eval_attack_before_launching():
    spec = {"kind": "load", "name": "fashion_mnist", "split": "train"}
    with pytest.raises(T.TrainConfigError, match="did you mean 'eps'"):
        L.make_job(TrainConfig(model="linear", num_classes=4), spec, val_spec=spec, eval_attack={"name": "pgd", "epz": 0.1})
    assert L.make_job(TrainConfig(model="linear", num_classes=4), spec, eval_attack={"name": "fgsm", "eps": 0.1})


@pytest.mark.slow
def test_train_command_in_one_process(tmp_path):
    "`python -m robbook train CONFIG.json --data SPEC`: one model into the cache, found again by train()."
    root = write_folder(tmp_path / "f", easy_data(64, 0))
    c = TrainConfig(model="linear", num_classes=4, batch_size=32, lr=0.1, weight_decay=0.0)
    (tmp_path / "cfg.json").write_text(c.to_json())
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "robbook", "train", str(tmp_path / "cfg.json"), "--data",
                        f"folder={root},mode=L", "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--quiet",
                        "--out", str(tmp_path / "out.json")], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    from robbook.data import load_folder
    r = train(c, load_folder(root, mode="L"), device="cpu", cache_dir=tmp_path / "cache", progress=False)
    assert r.from_cache and str(r.path) == out["path"] and r.key == out["key"]
    p = subprocess.run([sys.executable, "-m", "robbook", "train", str(tmp_path / "cfg.json")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "parameter 'data'" in p.stderr


# ---------------------------------------------------------------------------------------------
# real torchrun runs (2 Gloo processes on the CPU)

# no device augmentation: its random draws are per process (a DDP run with augmentation is another,
# equally valid sample of the same training, not the same numbers); the folder's crops are keyed
# by (seed, epoch, image) and would agree
CFG = TrainConfig(model="linear", num_classes=4, epochs=3, batch_size=64, lr=0.2, weight_decay=0.0)
ATTACK = {"name": "fgsm", "eps": 0.1}


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    "250 training images (a last batch of 58) and 33 validation images, as PNG folders."
    d = tmp_path_factory.mktemp("launch")
    tr = write_folder(d / "train", easy_data(250, 0))
    va = write_folder(d / "val", easy_data(33, 1))
    return {"kind": "folder", "path": str(tr), "mode": "L"}, {"kind": "folder", "path": str(va), "mode": "L"}


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", ROBBOOK_TEST_CODE_VERSION=T.code_version(),
               PYTHONPATH=str(TESTS) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return {**env, **extra}


@pytest.fixture(scope="module")
def two_process_run(specs, tmp_path_factory):
    "The uninterrupted 2-process run through the launcher (`python -m robbook train`, real module)."
    cache = tmp_path_factory.mktemp("cache2")
    tr, va = specs
    job = L.make_job(CFG, tr, val_spec=va, eval_attack=ATTACK, cache_dir=cache, device="cpu", num_workers=1)
    out = L.launch(job, nproc=2, timeout=300, env=_env())
    return out, T.load_trained(out["path"])


@pytest.mark.slow
def test_two_processes_through_the_launcher_equal_one_process(specs, two_process_run, tmp_path):
    """Tolerance: weights within 1e-5 and losses within 1e-5 (float32 sums in another order);
    counts and accuracies exactly."""
    out, two = two_process_run
    tr, va = specs
    assert out["world_size"] == 2 and not out["from_cache"] and out["epochs_run"] == 3
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = L.fit(CFG, spec=tr, val_spec=va, eval_attack=ATTACK, device="cpu", cache_dir=tmp_path, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert one.key == two.key                          # no BatchNorm: the world size is not in the key
    for (k, a), (_, b) in zip(sorted(two.model.state_dict().items()), sorted(one.model.state_dict().items())):
        assert torch.allclose(a, b, atol=1e-5), k
    for a, b in zip(two.history, one.history):
        assert a["n_seen"] == b["n_seen"] == 250 and a["val_n"] == b["val_n"] == 33
        for k in ("train_acc", "val_acc", "val_robust_acc"):
            assert a[k] == b[k], k
        for k in ("train_loss", "val_loss"):
            assert a[k] == pytest.approx(b[k], abs=1e-5), k


def _worker_pids(tag: str) -> dict[int, int]:
    """{RANK: pid} of the live rank processes whose environment carries ROBBOOK_TEST_TAG=tag.

    A rank's DataLoader workers inherit its environment (RANK included); they are told apart by their
    parent, which is the rank itself, while a rank's parent is torchrun."""
    tagged = {}                                                   # pid -> (rank, parent pid)
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            env = dict(e.split("=", 1) for e in (p / "environ").read_bytes().decode(errors="replace").split("\0") if "=" in e)
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if env.get("ROBBOOK_TEST_TAG") == tag and "RANK" in env and "LOCAL_RANK" in env:
            tagged[int(p.name)] = (int(env["RANK"]), ppid)
    return {rank: pid for pid, (rank, ppid) in tagged.items() if ppid not in tagged}


@pytest.mark.slow
def test_a_killed_rank_fails_the_job_and_a_rerun_resumes(specs, two_process_run, tmp_path):
    tr, va = specs
    out_ref, ref = two_process_run
    job = L.make_job(CFG, tr, val_spec=va, eval_attack=ATTACK, cache_dir=tmp_path, device="cpu", num_workers=1)
    tag = f"kill-{os.getpid()}-{time.time()}"
    errors = []

    def run():
        try:
            L.launch(job, nproc=2, module="train_helpers.launch_entry", timeout=300,
                     env=_env(ROBBOOK_TEST_SLEEP="0.3", ROBBOOK_TEST_TAG=tag))
        except L.LaunchError as e:
            errors.append(e)
    th = threading.Thread(target=run)
    th.start()
    entry = tmp_path / Path(out_ref["path"]).name
    killed = None
    deadline = time.time() + 240
    while time.time() < deadline and th.is_alive():
        if (entry / "checkpoint.pt").exists():
            pids = _worker_pids(tag)
            if 1 in pids:
                os.kill(pids[1], signal.SIGKILL)             # one rank dies mid-run
                killed = pids[1]
                break
        time.sleep(0.02)
    th.join(timeout=120)
    assert killed and not th.is_alive(), "the job finished before a rank could be killed (or hung)"
    assert errors, "a killed rank must fail the launch"
    msg = str(errors[0])
    assert "SIGKILL" in msg or "Signal 9" in msg or "-9" in msg, msg
    assert not (entry / "COMPLETE").exists()
    again = L.launch(job, nproc=2, module="train_helpers.launch_entry", timeout=300, env=_env())
    assert 1 <= again["epochs_run"] < CFG.epochs and again["path"] == str(entry)     # resumed, not restarted
    r = T.load_trained(again["path"])
    assert weights_digest(r.model) == weights_digest(ref.model)                     # same as uninterrupted
    assert without_time(r.history) == without_time(ref.history)


@pytest.mark.slow
def test_a_failing_rank_is_reported_with_its_error(specs, tmp_path):
    tr, _ = specs
    job = L.make_job(CFG.replace(epochs=1), tr, cache_dir=tmp_path, device="cpu")
    with pytest.raises(L.LaunchError) as e:
        L.launch(job, nproc=2, module="train_helpers.launch_entry", timeout=300, env=_env(ROBBOOK_TEST_FAIL_RANK="1"))
    # the rank's own error, not the timeout's "did not finish" (which a hang would end in)
    assert "rank 1 fails on purpose" in str(e.value) and "resume" in str(e.value)


def test_training_plan_and_estimate_are_counted_from_the_profile(monkeypatch):
    from robbook.profiles import PROFILES
    P = PROFILES["tsipras"]["smoke"]
    sizes, lin, l2 = P["mnist_train_sizes"], P["mnist_eps_linf"], P["mnist_eps_l2"]
    plan = L.training_plan("tsipras", "smoke")
    # per size: standard + each eps; the eps_model ones are among them; half-half at the model eps
    extra = sum(float(e) not in map(float, es) for e, es in zip(P["mnist_eps_model"], (lin, l2)))
    assert len(plan) == len(sizes) * (1 + len(lin) + len(l2)) + extra + 2
    assert sum(m["method"] == "half_half" for m in plan) == 2
    N, E = max(sizes), P["mnist_epochs"]
    assert {m["epochs"] for m in plan if m["n"] == N} == {E}
    assert {m["epochs"] for m in plan if m["n"] == min(sizes)} == {min(4 * E, max(E, -(-E * N // min(sizes))))}
    f = L._forward_flops("resnet18", "{}", (3, 32, 32), 10)
    assert f == pytest.approx(1.11e9, rel=0.03)                     # ResNet-18 on CIFAR: 0.56 GMAC
    e = L.estimate("tsipras", "full")
    w = L.estimate("tsipras", "full", without=("rimagenet",))
    assert e["models"] > w["models"] > 0 and e["gpu_hours"] > 10 * w["gpu_hours"]
    monkeypatch.setattr(L, "SUSTAINED_TFLOPS", 2 * L.SUSTAINED_TFLOPS)
    assert L.estimate("tsipras", "full")["gpu_hours"] == pytest.approx(e["gpu_hours"] / 2)
    with pytest.raises(ParameterError, match="chapter"):
        L.training_plan("madry", "smoke")
    with pytest.raises(ParameterError, match="profile"):
        L.training_plan("kamath", "huge")


def test_estimate_table_adds_a_row_only_where_an_optional_slot_trains():
    t = L.estimate_table("tsipras")
    runs = [r for _, r in t.index]
    assert runs.count("as run by default") == 3
    with_ri = t.loc[("full", "with Restricted ImageNet (imagenet_root)")]
    assert with_ri["models"] == L.estimate("tsipras", "full")["models"]
    assert t.loc[("full", "as run by default")]["models"] == L.estimate("tsipras", "full", without=("rimagenet",))["models"]
    assert with_ri["models"] > t.loc[("full", "as run by default")]["models"]
    k = L.estimate_table("kamath")                     # no optional slot: one row per profile
    assert [r for _, r in k.index] == ["as run by default"] * 3


def test_every_chapter_has_a_plan_that_grows_with_the_profile():
    "Each chapter's plan is counted from its profile (the book's tests check the smoke plan against a run)."
    for chap in ("tsipras", "ilyas", "kamath", "moayeri"):
        e = {p: L.estimate(chap, p, without=("rimagenet",)) for p in ("smoke", "quick", "full")}
        assert 0 < e["smoke"]["models"] and e["smoke"]["models"] <= e["full"]["models"], chap
        assert 0 < e["smoke"]["gpu_hours"] < e["quick"]["gpu_hours"] < e["full"]["gpu_hours"], chap
    # a profile value moves the plan: one more TRADES budget is one more Kamath model, one more
    # colour-shift rho one more Moayeri model, a robustness checkpoint one Ilyas model fewer
    base = len(L.training_plan("kamath", "smoke"))
    from robbook.profiles import PROFILES
    K = PROFILES["kamath"]["smoke"]
    assert len(L.training_plan("kamath", "smoke", params={"trades_eps": [*K["trades_eps"], 0.3]})) == base + 1
    M = PROFILES["moayeri"]["smoke"]
    assert (len(L.training_plan("moayeri", "smoke", params={"cs_rhos": [*M["cs_rhos"], 64.0]}))
            == len(L.training_plan("moayeri", "smoke")) + 1)
    quick = L.estimate("ilyas", "quick")["models"]
    assert L.estimate("ilyas", "quick", params={"checkpoint": "/x.pt"})["models"] == quick - 1
    # a dataset built by attack steps costs 2 passes per step and image; it is not a model
    builds = [m for m in L.training_plan("ilyas", "smoke") if m["method"] == "build"]
    assert builds and all(m["epochs"] == 1 for m in builds)


# ---------------------------------------------------------------------------------------------
# issue #20

@pytest.mark.slow
def test_a_timeout_stops_torchrun_and_every_worker(specs, tmp_path):
    "A launch that runs past its timeout raises LaunchError and leaves no rank process behind."
    tr, _ = specs
    job = L.make_job(CFG.replace(epochs=1), tr, cache_dir=tmp_path, device="cpu", num_workers=0)
    tag = f"timeout-{os.getpid()}-{time.time()}"
    seen, errors = {}, []

    def run():
        try:
            L.launch(job, nproc=2, module="train_helpers.launch_entry", timeout=30,
                     env=_env(ROBBOOK_TEST_SLEEP="200", ROBBOOK_TEST_TAG=tag))
        except L.LaunchError as e:
            errors.append(e)
    th = threading.Thread(target=run)
    th.start()
    while th.is_alive():
        seen.update(_worker_pids(tag))
        time.sleep(0.2)
    th.join()
    assert errors and "did not finish within 30" in str(errors[0]), errors
    assert set(seen) == {0, 1}, f"the ranks never started: {seen}"
    time.sleep(1)
    alive = [pid for pid in seen.values() if Path(f"/proc/{pid}").exists()
             and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert not alive, f"rank processes still running after the timeout: {alive}"
    assert not _worker_pids(tag)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_train_help_prints_the_train_options(flag):
    p = subprocess.run([sys.executable, "-m", "robbook", "train", flag], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "--data" in p.stdout and "--nproc" not in p.stderr and "unrecognized" not in p.stderr


def test_measured_throughput_gives_the_expected_time_of_the_plan():
    """`measure_throughput` times every architecture of the plan once; `expected_hours` is the plan's passes over
    those rates: linear in each rate, and a missing rate is named instead of guessed."""
    from robbook.config import resolve
    P = dict(resolve("kamath", "quick", tiny=True))
    rates = L.measure_throughput("kamath", "quick", params=P, device="cpu", batch=4, steps=1, progress=False)
    plan = L.training_plan("kamath", "quick", params=P)
    assert set(rates) == {L._arch_key(m) for m in plan} and all(r > 0 for r in rates.values())
    h = L.expected_hours("kamath", "quick", rates, params=P)
    by_hand = sum(L._PASSES[m["method"]](m["steps"]) * m["n"] * m["epochs"] / rates[L._arch_key(m)]
                  for m in plan) / 3600
    assert h == pytest.approx(by_hand, rel=1e-12)
    assert L.expected_hours("kamath", "quick", {k: 4 * r for k, r in rates.items()}, params=P) == \
        pytest.approx(h / 4, rel=1e-12)
    with pytest.raises(ValueError, match="no measured rate"):
        L.expected_hours("kamath", "quick", dict(list(rates.items())[1:]), params=P)


def test_estimate_command_prints_the_floor_and_the_measured_time(capsys):
    from robbook.run import main
    assert main(["estimate", "moayeri", "--profile", "quick"]) == 0
    out = capsys.readouterr().out
    assert "moayeri quick:" in out and "the FLOP floor" in out and "measured" not in out
    assert main(["estimate", "moayeri", "--profile", "quick", "--device", "cpu", "--measure",
                 "-p", "arch_kwargs", '{"resnet18": {"width": 8}, "kamath_stdcnn": {}}',
                 "-p", "cs_n_train", "64"]) == 0
    assert "at the speed measured on cpu" in capsys.readouterr().out
    assert main(["estimate", "moayeri", "--profile", "quik"]) == 2
    assert "'quik' is not a profile of 'moayeri'" in capsys.readouterr().err
    assert main(["estimate", "demo"]) == 2 and "'demo' is not allowed" in capsys.readouterr().err
