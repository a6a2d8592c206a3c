"""Tests of robbook.train: config checks, objectives, determinism, cache, resume after a kill, DDP, probes."""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import robbook.train as T
from robbook.train import config as TC, dist as TD, key as TK, loop as TL, objectives as TO
from robbook.train import TrainConfig, TrainConfigError, lr_at, train, train_linear_probe
from _helpers import write_smooth_folders
from train_helpers.easy import easy_data, folder_order, helpful_attack, weights_digest, without_time, write_folder

HELPER = Path(__file__).parent / "train_helpers" / "run_train.py"
TEST_ROOT = Path(__file__).parent


def cfg(**kw) -> TrainConfig:
    "A tiny linear model on the 8×8 easy task."
    base = dict(model="linear", num_classes=4, epochs=1, batch_size=32, lr=0.1, weight_decay=0.0)
    return TrainConfig(**{**base, **kw})


@contextlib.contextmanager
def one_thread():
    "Same torch thread count as the child processes (results can depend on it)."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data():
    return easy_data(256, 0), easy_data(128, 1)


def child_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(TEST_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def helper_args(cache, out, config: TrainConfig, *extra):
    return [str(HELPER), str(cache), str(out), config.to_json(), "--code-version", T.code_version(), *extra]


def run_child(cache, out, config: TrainConfig, *extra, timeout=120):
    return subprocess.run([sys.executable, *helper_args(cache, out, config, *extra)],
                          env=child_env(), capture_output=True, text=True, timeout=timeout)


def read_out(out, rank=0):
    return json.loads((Path(out) / f"rank{rank}.json").read_text())


# ---------------------------------------------------------------------------------------------
# configuration and bad input

@pytest.mark.parametrize("field,value", [
    ("model", "resnet1"), ("method", "fgsm_at"), ("norm", "l3"), ("optimizer", "rmsprop"),
    ("schedule", "exponential"), ("attack_bn", "frozen"), ("augment", "cutout"), ("eps", 1.5),
    ("eps", -0.1), ("eps", float("nan")), ("epochs", 0), ("batch_size", 0), ("lr", 0.0), ("steps", 0),
    ("momentum", 1.0), ("num_classes", 1), ("seed", -1), ("amp", 1), ("milestones", [5, 2]),
    ("augment_kwargs", {"max_frac": 0.1}), ("model_kwargs", {"num_classes": 3}), ("alpha", 0.0),
])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(TrainConfigError) as e:
        cfg(**{field: value})
    assert isinstance(e.value, ValueError)
    assert e.value.field == field
    assert f"TrainConfig.{field}" in str(e.value) and "allowed values" in str(e.value)


def test_config_unknown_name_lists_allowed_values():
    with pytest.raises(ValueError, match=r"allowed values: \['standard', 'pgd', 'trades', 'half_half'\]"):
        cfg(method="madry")
    with pytest.raises(ValueError, match="linf"):
        cfg(norm="L_3")
    with pytest.raises(TrainConfigError, match="unknown field"):
        TrainConfig.from_dict({"lrr": 0.1})
    with pytest.raises(TrainConfigError, match="piecewise"):
        cfg(schedule="piecewise")          # needs lr_points


def test_config_json_round_trip():
    c = cfg(method="trades", eps=0.1, beta=3.0, augment="translate", augment_kwargs={"max_frac": 0.2},
            schedule="step", milestones=[1], model_kwargs={"bias": False})
    d = json.loads(c.to_json())
    assert TrainConfig.from_dict(d) == c
    assert c.replace(seed=3).seed == 3 and c.seed == 0
    assert c.step_size == pytest.approx(2.5 * 0.1 / 10)


def test_schedules():
    c = cfg(epochs=10, lr=1.0, schedule="step", milestones=[5, 8], gamma=0.1)
    assert [lr_at(c, t) for t in (0.5, 4.99, 5.0, 7.5, 9.9)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    c = cfg(epochs=10, lr=2.0, schedule="onecycle", pct_start=0.4)
    assert lr_at(c, 0) == 0 and lr_at(c, 4) == pytest.approx(2) and lr_at(c, 7) == pytest.approx(1)
    c = cfg(epochs=4, lr=1.0, schedule="piecewise", lr_points=[[0, 0], [2, 1], [4, 0.5]])
    assert [lr_at(c, t) for t in (1, 2, 3, 10)] == pytest.approx([0.5, 1, 0.75, 0.5])
    c = cfg(epochs=10, lr=1.0, schedule="cosine", warmup_epochs=1)
    assert lr_at(c, 0.5) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 0.05)))
    assert lr_at(c, 5) == pytest.approx(0.5) and lr_at(c, 10) == pytest.approx(0, abs=1e-12)
    assert lr_at(cfg(lr=0.3), 0.7) == 0.3


def test_bad_input_fails_before_training(data, tmp_path, monkeypatch):
    tr, va = data
    called = []
    monkeypatch.setattr(TL, "_train_loop", lambda *a, **k: called.append(1))
    cases = [
        (cfg(batch_size=1000), tr, {}, "batch_size"),                       # larger than the data
        (cfg(num_classes=3), tr, {}, "num_classes"),                        # labels up to 3
        (cfg(method="pgd", norm="l2", eps=9.0), tr, {}, "eps"),             # > sqrt(64) = 8
        (cfg(method="pgd", norm="l1", eps=65.0), tr, {}, "eps"),            # > 64
        (cfg(), "imagenette", {}, "train_data"),                            # unknown data set
        (cfg(), tr, {"eval_attack": {"name": "cw"}, "val_data": va}, "eval_attack"),
        (cfg(), tr, {"eval_attack": {"name": "pgd", "norm": "l7", "eps": 0.1}, "val_data": va}, "eval_attack"),
        (cfg(), tr, {"eval_attack": {"name": "pgd", "eps": 0.1}}, "eval_attack"),   # no val_data
        (cfg(model="mnist_cnn", model_kwargs={"widht": 3}), tr, {}, "model_kwargs"),
    ]
    for c, d, kw, field in cases:
        with pytest.raises(ValueError) as e:
            train(c, d, device="cpu", cache_dir=tmp_path / "cache", progress=False, **kw)
        assert field in str(e.value), (field, str(e.value))
        assert "allowed" in str(e.value)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="cache_dir.*not a writable directory"):
        train(cfg(), tr, device="cpu", cache_dir=blocker / "cache", progress=False)
    assert not called
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


# ---------------------------------------------------------------------------------------------
# objectives

@pytest.mark.parametrize("method,extra", [
    ("standard", dict(augment="translate", augment_kwargs={"max_frac": 0.15})),
    ("pgd", dict(augment="translate", attack_bn="train")),                      # Kamath Fig. 12 style
    ("trades", dict(augment="rotate_translate", augment_kwargs={"max_deg": 10.0, "max_frac": 0.1}, beta=3.0)),
    ("half_half", dict(augment="rotate", augment_kwargs={"max_deg": 10.0}, amp=True)),  # amp: no-op on CPU
])
def test_each_method_learns_the_easy_task(method, extra, data, tmp_path):
    tr, va = data
    c = cfg(method=method, eps=0.05 if method != "standard" else 0.0, steps=3, **extra)
    r = train(c, tr, val_data=va, device="cpu", cache_dir=tmp_path, progress=method == "pgd",
              eval_attack={"name": "pgd", "eps": 0.05, "steps": 3} if method != "standard" else None)
    h = r.history[-1]
    assert not r.from_cache and r.epochs_run == 1 and h["n_seen"] == len(tr)
    assert h["val_acc"] > 0.6, h                      # chance is 0.25
    if method != "standard":
        assert 0 <= h["train_robust_acc"] <= 1 and h["val_robust_acc"] > 0.4, h
    lines = (r.path / "history.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1]


def test_attack_bn_train_mode_keeps_running_stats():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    m.train()
    x, y = torch.rand(12, 1, 4, 4), torch.randint(0, 3, (12,))
    c = cfg(method="pgd", eps=0.1, steps=4, attack_bn="train", num_classes=3)
    bn = m[2]
    before = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    modes = []
    hook = m.register_forward_pre_hook(lambda mod, inp: modes.append(mod.training))
    x_adv = TO._pgd_examples(c, m, x, y)
    hook.remove()
    assert modes and all(modes)                                   # attacked in train mode
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert torch.equal(bn.num_batches_tracked, before[2]) and bn.momentum == 0.1 and m.training
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and not torch.equal(x_adv, x)
    modes.clear()
    hook = m.register_forward_pre_hook(lambda mod, inp: modes.append(mod.training))
    TO._pgd_examples(c.replace(attack_bn="eval"), m, x, y)
    hook.remove()
    assert modes and not any(modes) and m.training


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 0.5)])
def test_trades_perturb_stays_in_ball_and_raises_kl(norm, eps):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.rand(8, 1, 4, 4)
    xa = T.trades_perturb(m, x, eps=eps, steps=5, norm=norm)
    d = (xa - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert (size <= eps + 1e-5).all() and xa.min() >= 0 and xa.max() <= 1
    p = torch.softmax(m(x), 1)
    kl = lambda z: torch.nn.functional.kl_div(torch.log_softmax(m(z), 1), p, reduction="sum").item()
    assert kl(xa) > kl(x + 0.001 * torch.randn_like(x)) + 1e-6


# ---------------------------------------------------------------------------------------------
# the objectives and the logged metrics, computed by hand

def _tiny():
    "A fixed 3-class linear model on 1x4x4 images and a batch of 6 (even, so n // 2 != n // 4)."
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    g = torch.Generator().manual_seed(1)
    return m, torch.rand(6, 1, 4, 4, generator=g), torch.tensor([0, 1, 2, 0, 1, 2])


def _ce(logits, y):
    "Mean cross-entropy written out: mean_i (logsumexp(z_i) - z_i[y_i])."
    return (torch.logsumexp(logits, 1) - logits[torch.arange(len(y)), y]).mean()


def _flip(x):
    "A fixed stand-in for the attack, so that the objective's arithmetic is what is tested."
    return 1 - x


def test_objective_standard_by_hand():
    m, x, y = _tiny()
    loss, st = TO._objective(cfg(method="standard", num_classes=3), m, m, x, y)
    z = m(x)
    assert torch.allclose(loss, _ce(z, y), rtol=1e-6, atol=0)
    assert st.tolist() == pytest.approx([6 * loss.item(), 6, (z.argmax(1) == y).sum().item(), 6, 0, 0], rel=1e-12)


def test_objective_pgd_by_hand(monkeypatch):
    m, x, y = _tiny()
    monkeypatch.setattr(TO, "_pgd_examples", lambda c, model, xb, yb: _flip(xb))
    loss, st = TO._objective(cfg(method="pgd", eps=0.1, num_classes=3), m, m, x, y)
    z, za = m(x), m(_flip(x))
    assert torch.allclose(loss, _ce(za, y), rtol=1e-6, atol=0)
    assert st.tolist() == pytest.approx([6 * loss.item(), 6, (z.argmax(1) == y).sum().item(), 6,
                                         (za.argmax(1) == y).sum().item(), 6], rel=1e-12)


def test_objective_trades_by_hand(monkeypatch):
    m, x, y = _tiny()
    monkeypatch.setattr(TO, "trades_perturb", lambda model, xb, **kw: _flip(xb))
    loss, st = TO._objective(cfg(method="trades", eps=0.1, beta=3.0, num_classes=3), m, m, x, y)
    z, za = m(x), m(_flip(x))
    p, logp, logq = torch.softmax(z, 1), torch.log_softmax(z, 1), torch.log_softmax(za, 1)
    kl = (p * (logp - logq)).sum() / len(y)          # KL(p_nat || p_adv), averaged over the batch
    assert kl.item() > 1e-3                            # the robust term matters in this check
    assert torch.allclose(loss, _ce(z, y) + 3.0 * kl, rtol=1e-6, atol=0)
    assert st.tolist() == pytest.approx([6 * loss.item(), 6, (z.argmax(1) == y).sum().item(), 6,
                                         (za.argmax(1) == y).sum().item(), 6], rel=1e-12)


def test_objective_half_half_by_hand(monkeypatch):
    m, x, y = _tiny()
    monkeypatch.setattr(TO, "_pgd_examples", lambda c, model, xb, yb: _flip(xb))
    loss, st = TO._objective(cfg(method="half_half", eps=0.1, num_classes=3), m, m, x, y)
    z = m(torch.cat([x[:3], _flip(x[3:])]))           # first half natural, second half attacked
    hit = z.argmax(1) == y
    assert torch.allclose(loss, _ce(z, y), rtol=1e-6, atol=0)
    assert st.tolist() == pytest.approx([6 * loss.item(), 6, hit[:3].sum().item(), 3, hit[3:].sum().item(), 3],
                                        rel=1e-12)


def test_logged_metrics_by_hand(tmp_path, monkeypatch):
    """Every metric of the history, recomputed: lr = 1e-30 leaves the weights at their initial
    values, so each one is a plain function of the initial model. 251 training images in batches
    of 64 (a short last batch), 33 validation images, and an evaluation 'attack' that *repairs*
    points: the per-example rule (robust = clean and attacked right) must not count those."""
    tr, va = easy_data(251, 0), easy_data(33, 1)
    monkeypatch.setattr(TO, "_pgd_examples", lambda c, model, xb, yb: _flip(xb))
    c = cfg(method="pgd", eps=0.1, lr=1e-30, momentum=0.0, batch_size=64)
    r = train(c, tr, val_data=va, device="cpu", cache_dir=tmp_path, progress=False,
              eval_attack=functools.partial(helpful_attack, eps=0.3))
    torch.manual_seed(0)
    init = TL._build_model(c, (1, 8, 8))
    assert weights_digest(init) == weights_digest(r.model)            # nothing moved
    m = r.model
    h, = r.history
    x, y = tr.float(), tr.y
    with torch.no_grad():
        z, za = m(x), m(_flip(x))
    assert h["n_seen"] == 251
    assert h["train_loss"] == pytest.approx(torch.nn.functional.cross_entropy(za, y).item(), rel=1e-6)
    assert h["train_acc"] == (z.argmax(1) == y).sum().item() / 251
    assert h["train_robust_acc"] == (za.argmax(1) == y).sum().item() / 251
    xv, yv = va.float(), va.y
    with torch.no_grad():
        zv = m(xv)
    zr = m(helpful_attack(m, xv, yv, eps=0.3)).detach()
    clean_ok, adv_ok = zv.argmax(1) == yv, zr.argmax(1) == yv
    assert h["val_n"] == 33
    assert h["val_loss"] == pytest.approx(torch.nn.functional.cross_entropy(zv, yv).item(), rel=1e-6)
    assert h["val_acc"] == clean_ok.sum().item() / 33
    assert h["val_robust_acc"] == (clean_ok & adv_ok).sum().item() / 33
    assert adv_ok.sum() > (clean_ok & adv_ok).sum()     # the attack did repair points: the rule matters here
    assert h["val_robust_acc"] <= h["val_acc"]


def test_steps_per_epoch_and_loss_scale():
    assert [T.steps_per_epoch(n, 64) for n in (256, 257, 258, 320)] == [4, 4, 5, 5]
    assert T.steps_per_epoch(257, 64, 2) == 4 and T.steps_per_epoch(259, 64, 4) == 4
    assert T.steps_per_epoch(260, 64, 4) == 5
    # a last batch of 59 dealt 30 + 29: the mean of the two scaled means is the mean over the 59
    losses = torch.rand(59, dtype=torch.float64)
    s0, s1 = TD._loss_scale(251, 64, 3, 30, 2), TD._loss_scale(251, 64, 3, 29, 2)
    assert ((s0 * losses[:30].mean() + s1 * losses[30:].mean()) / 2).item() \
        == pytest.approx(losses.mean().item(), rel=1e-12)
    assert TD._loss_scale(256, 64, 0, 64, 1) == 1.0


def test_every_field_documented_where_declared():
    import dataclasses
    notes = TC._field_comments(TrainConfig)
    assert set(notes) == {f.name for f in dataclasses.fields(TrainConfig)} and all(notes.values())
    assert "> 0 for pgd" in notes["eps"] and "NORM_ALIASES" in notes["norm"] and "crop_flip" in notes["augment"]
    assert "- eps = 0.0: attack budget" in TrainConfig.__doc__          # help(TrainConfig) shows them


def test_adversarial_method_needs_a_budget():
    for method in ("pgd", "trades", "half_half"):
        with pytest.raises(TrainConfigError, match=r"TrainConfig.eps.*a number > 0") as e:
            TrainConfig.from_dict({"method": method})
        assert e.value.field == "eps" and method in str(e.value)
        with pytest.raises(TrainConfigError, match="eps"):
            cfg(method=method, eps=0.0)
    assert cfg(method="pgd", eps=0.1).eps == 0.1 and cfg(eps=0.0).method == "standard"


@pytest.mark.parametrize("alias,name", [("inf", "linf"), ("Linf", "linf"), ("linf", "linf"), ("l_inf", "linf"),
                                        ("L_INF", "linf"), (float("inf"), "linf"), ("2", "l2"), ("L2", "l2"),
                                        (2, "l2"), ("l_2", "l2"), ("1", "l1"), ("L1", "l1")])
def test_norm_aliases_are_one_table(alias, name):
    from robbook.config import NORM_ALIASES, canonical_norm
    assert canonical_norm(alias) == name
    c = cfg(method="pgd", eps=0.1, norm=alias)
    assert c.norm == name and T.run_key(c, easy_data(64, 0)) == T.run_key(cfg(method="pgd", eps=0.1, norm=name),
                                                                          easy_data(64, 0))
    assert set(NORM_ALIASES.values()) == set(T.norm_names())


def test_unknown_field_says_did_you_mean():
    with pytest.raises(TrainConfigError, match=r"did you mean 'eps'\?.*allowed values: \['model'"):
        TrainConfig.from_dict({"method": "pgd", "epz": 0.1})
    with pytest.raises(TrainConfigError, match="did you mean 'epochs'"):
        train({"epoch": 2}, easy_data(64, 0), device="cpu", progress=False)


def test_eval_attack_arguments_checked_before_training(data, tmp_path, monkeypatch):
    tr, va = data
    called = []
    monkeypatch.setattr(TL, "_train_loop", lambda *a, **k: called.append(1))
    for spec, fragment in [({"name": "pgd", "epz": 0.1}, "did you mean 'eps'"),
                           ({"name": "pgd", "eps": 0.1, "stepz": 3}, "did you mean 'steps'"),
                           ({"name": "fgsm", "eps": 0.1, "steps": 3}, "no argument 'steps'"),
                           ({"name": "pgd", "steps": 3}, "needs ['eps']"),
                           ({"name": "pgd", "eps": -0.1}, "eps a finite number >= 0")]:
        with pytest.raises(TrainConfigError, match="eval_attack") as e:
            train(cfg(), tr, val_data=va, device="cpu", cache_dir=tmp_path, progress=False, eval_attack=spec)
        assert fragment in str(e.value), str(e.value)
    assert not called and not any(tmp_path.iterdir())
    attack, _ = TK._eval_attack({"name": "pgd", "eps": 0.1, "norm": "L2"})
    assert attack.keywords["norm"] == "l2"


def test_failed_run_leaves_nothing_in_the_cache(data, tmp_path, monkeypatch):
    tr, _ = data

    def boom(*a, **k):
        raise TypeError("a failure inside the first epoch")
    with monkeypatch.context() as m:
        m.setattr(TL, "_objective", boom)
        with pytest.raises(TypeError, match="first epoch"):
            train(cfg(), tr, device="cpu", cache_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []                   # no folder with only .lock and config.json
    r = train(cfg(), tr, device="cpu", cache_dir=tmp_path, progress=False)      # and a later call trains
    assert (r.path / "COMPLETE").exists() and not r.from_cache


def test_labels_checked_by_the_package(data, tmp_path):
    from robbook.data import ImageData
    tr, _ = data
    with pytest.raises(ValueError, match="whole-number class labels"):
        ImageData(tr.x, tr.y.float() + 0.5, tr.classes, "float labels")
    neg = ImageData(tr.x, torch.where(tr.y == 0, -1, tr.y), tr.classes, "negative")
    with pytest.raises(TrainConfigError, match=r"train_data.*never negative"):
        train(cfg(), neg, device="cpu", cache_dir=tmp_path, progress=False)
    floats = ImageData(tr.x, tr.y, tr.classes, "floats")
    floats.y = floats.y.float()                     # changed after construction
    with pytest.raises(TrainConfigError, match=r"labels of dtype torch.float32.*y.long\(\)"):
        train(cfg(), floats, device="cpu", cache_dir=tmp_path, progress=False)
    with pytest.raises(TrainConfigError, match="num_classes"):
        train(cfg(num_classes=2), tr, device="cpu", cache_dir=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# what the cache key sees

def _closure_attack(eps):
    def attack(model, x, y):
        from robbook.attacks import fgsm
        return fgsm(model, x, y, eps=eps)
    return attack


def test_eval_attack_must_be_keyable(data, tmp_path, monkeypatch):
    tr, va = data
    called = []
    monkeypatch.setattr(TL, "_train_loop", lambda *a, **k: called.append(1))
    from robbook.attacks import fgsm, pgd
    for bad in [_closure_attack(0.5), lambda m, x, y: x, functools.partial(lambda m, x, y, eps: x, eps=0.1),
                functools.partial(fgsm, eps=torch.tensor(0.1))]:
        with pytest.raises(TrainConfigError, match="eval_attack") as e:
            train(cfg(), tr, val_data=va, device="cpu", cache_dir=tmp_path, progress=False, eval_attack=bad)
        assert "allowed values" in str(e.value) and "functools.partial" in str(e.value)
    assert not called
    # what is accepted is keyed with its settings
    keys = {T.run_key(cfg(), tr, va, a) for a in [functools.partial(fgsm, eps=0.0), functools.partial(fgsm, eps=0.5),
                                                  {"name": "fgsm", "eps": 0.5}, functools.partial(pgd, eps=0.5),
                                                  functools.partial(helpful_attack, eps=0.5), helpful_attack, None]}
    assert len(keys) == 7
    assert T.run_key(cfg(), tr, va, functools.partial(fgsm, eps=0.5)) == T.run_key(cfg(), tr, va, functools.partial(fgsm, eps=0.5))


def test_code_version_covers_config_and_new_flags(monkeypatch):
    assert "robbook.config" in T.CODE_MODULES
    full = T.code_version.__wrapped__()
    monkeypatch.setattr(TK, "CODE_MODULES", tuple(m for m in T.CODE_MODULES if m != "robbook.config"))
    assert T.code_version.__wrapped__() != full
    tr = easy_data(64, 0)
    keys = {T.run_key(cfg(**kw), tr) for kw in [{}, {"deterministic": True}, {"compile": True}]}
    assert len(keys) == 3
    for field in ("deterministic", "compile"):
        with pytest.raises(TrainConfigError, match=field):
            cfg(**{field: 1})


def test_code_version_covers_every_module_of_the_train_package(monkeypatch):
    "`robbook.train` in CODE_MODULES counts with each of its modules: a change in any one of them changes the key."
    import importlib
    files = {p for _, p in TK._module_files(importlib.import_module("robbook.train"))}
    assert files == set(Path(TK.__file__).parent.glob("*.py")) and len(files) >= 8
    full, real = T.code_version.__wrapped__(), TK._code_digest
    monkeypatch.setattr(TK, "_code_digest", lambda src: real(src + "\nx = 1") if "def _objective(" in src else real(src))
    assert T.code_version.__wrapped__() != full                      # a change in robbook/train/objectives.py only


def test_backend_settings_deterministic_option():
    assert TL._backend_settings(cfg(), "cpu") == {} == TL._backend_settings(cfg(deterministic=True), "cpu")
    fast = TL._backend_settings(cfg(), "cuda")
    assert fast["cudnn.benchmark"] and not fast["deterministic_algorithms"]
    det = TL._backend_settings(cfg(deterministic=True), "cuda")
    assert not det["cudnn.benchmark"] and det["cudnn.deterministic"] and det["deterministic_algorithms"]
    assert det["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")


def test_train_restores_the_callers_backend_settings(tmp_path, data, monkeypatch):
    """cuDNN autotuning is a setting of the whole process: `train` turns on the GPU settings only while it
    trains and gives the caller's back when it returns, from a fresh run, from the cache, and after an error.
    (On the CPU `_backend_settings` is empty, so the GPU settings are forced here.)"""
    gpu = {"cudnn.benchmark": True, "cudnn.deterministic": False, "deterministic_algorithms": False}
    monkeypatch.setattr(TL, "_backend_settings", lambda c, d: dict(gpu))
    seen, loop = [], TL._train_loop

    def spy(*a, **k):
        seen.append(torch.backends.cudnn.benchmark)
        return loop(*a, **k)
    monkeypatch.setattr(TL, "_train_loop", spy)
    before = TL._current_backend_settings()
    try:
        torch.backends.cudnn.benchmark = False
        mine = TL._current_backend_settings()
        r = train(cfg(), data[0], cache_dir=tmp_path, progress=False)
        assert seen == [True] and TL._current_backend_settings() == mine
        assert train(cfg(), data[0], cache_dir=tmp_path, progress=False).from_cache
        assert TL._current_backend_settings() == mine

        def boom(*a, **k):
            assert torch.backends.cudnn.benchmark is True
            raise RuntimeError("killed")
        monkeypatch.setattr(TL, "_train_loop", boom)
        with pytest.raises(RuntimeError, match="killed"):
            train(cfg(seed=1), data[0], cache_dir=tmp_path, progress=False)
        assert TL._current_backend_settings() == mine and r.model is not None
    finally:
        TL._apply_backend_settings(before)


def test_sync_bn_swap_shares_parameters_and_undoes():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
    x = torch.rand(5, 1, 8, 8)
    m.eval()
    before = m(x)
    bn = m[1]
    undo = TD._sync_bn(m)
    assert isinstance(m[1], nn.SyncBatchNorm) and m[1].weight is bn.weight and m[1].running_mean is bn.running_mean
    assert torch.equal(m(x), before)                   # same layer in eval mode
    m.train()
    m(x)                                               # no process group: plain batch statistics
    assert not torch.equal(bn.running_mean, torch.zeros(4))   # the shared buffer was updated
    undo()
    assert m[1] is bn and not any(isinstance(k, nn.SyncBatchNorm) for k in m.modules())


# ---------------------------------------------------------------------------------------------
# determinism, cache

def test_same_seed_same_weights(data, tmp_path):
    tr, va = data
    c = cfg(method="pgd", eps=0.05, steps=2, augment="translate", epochs=2)
    a = train(c, tr, device="cpu", cache_dir=tmp_path / "a", progress=False)
    b = train(c.to_dict(), tr, device="cpu", cache_dir=tmp_path / "b", progress=False)    # a dict works too
    assert not a.from_cache and not b.from_cache
    assert weights_digest(a.model) == weights_digest(b.model)
    assert without_time(a.history) == without_time(b.history)
    other = train(c.replace(seed=1), tr, device="cpu", cache_dir=tmp_path / "c", progress=False)
    assert weights_digest(other.model) != weights_digest(a.model)


def test_cache_hit_and_corrupt_entries_are_retrained(data, tmp_path, monkeypatch):
    tr, va = data
    c = cfg(epochs=2, method="half_half", eps=0.05, steps=2)
    first = train(c, tr, val_data=va, device="cpu", cache_dir=tmp_path, progress=False)
    digest = weights_digest(first.model)
    assert not first.from_cache and first.epochs_run == 2
    assert {p.name for p in first.path.iterdir()} >= {"COMPLETE", "model.pt", "result.json", "history.jsonl",
                                                     "config.json"}
    assert not (first.path / "checkpoint.pt").exists()

    epochs = []
    real = TO._objective
    monkeypatch.setattr(TL, "_objective", lambda *a, **k: (epochs.append(1), real(*a, **k))[1])
    hit = train(c, tr, val_data=va, device="cpu", cache_dir=tmp_path, progress=False)
    assert hit.from_cache and hit.epochs_run == 0 and not epochs
    assert hit.key == first.key and hit.path == first.path
    assert weights_digest(hit.model) == digest and hit.history == first.history
    assert not hit.model.training

    # anything different is another entry
    assert train(c, tr, val_data=va.subset(slice(0, 64)), device="cpu", cache_dir=tmp_path, progress=False).key != first.key
    assert T.run_key(c.replace(seed=5), tr, va) != first.key and T.run_key(c, tr, va) == first.key

    def corrupt_and_check(damage, why):
        damage(first.path)
        epochs.clear()
        with pytest.warns(RuntimeWarning, match=why):
            r = train(c, tr, val_data=va, device="cpu", cache_dir=tmp_path, progress=False)
        assert not r.from_cache and r.epochs_run == 2 and epochs
        assert weights_digest(r.model) == digest                       # retrained to the same result
        assert (first.path / "COMPLETE").exists()

    def truncate(p):
        b = (p / "model.pt").read_bytes()
        (p / "model.pt").write_bytes(b[: len(b) // 2])

    def tamper(p):
        j = json.loads((p / "result.json").read_text())
        j["history"][0]["val_acc"] = 1.0
        (p / "result.json").write_text(json.dumps(j))

    corrupt_and_check(truncate, "hash mismatch of model.pt")
    corrupt_and_check(lambda p: (p / "COMPLETE").unlink(), "missing COMPLETE")
    corrupt_and_check(tamper, "hash mismatch of result.json")
    corrupt_and_check(lambda p: (p / "COMPLETE").write_text("{not json"), "unreadable COMPLETE")


def test_unreadable_checkpoint_restarts_from_scratch(data, tmp_path):
    tr, _ = data
    c = cfg(epochs=2)
    ref = train(c, tr, device="cpu", cache_dir=tmp_path / "ref", progress=False)
    path = tmp_path / "x" / ref.path.name
    path.mkdir(parents=True)
    (path / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.warns(RuntimeWarning, match="checkpoint .* unreadable"):
        r = train(c, tr, device="cpu", cache_dir=tmp_path / "x", progress=False)
    assert r.path == path and r.epochs_run == 2 and weights_digest(r.model) == weights_digest(ref.model)


# ---------------------------------------------------------------------------------------------
# resume after a kill

RESUME_CFG = dict(epochs=4, method="pgd", eps=0.05, steps=2, augment="translate", schedule="cosine",
                  momentum=0.9, weight_decay=1e-3)


def test_resume_after_crash_equals_uninterrupted_run(data, tmp_path):
    tr, _ = data
    c = cfg(**RESUME_CFG)
    with one_thread():
        ref = train(c, tr, device="cpu", cache_dir=tmp_path / "ref", progress=False)
    # child crashes (os._exit) right after the checkpoint of epoch 2
    p = run_child(tmp_path / "cache", tmp_path / "out1", c, "--exit-after", "2")
    assert p.returncode == 17, p.stderr
    entry = tmp_path / "cache" / ref.path.name
    assert (entry / "checkpoint.pt").exists() and not (entry / "COMPLETE").exists()
    assert torch.load(entry / "checkpoint.pt", weights_only=True)["epoch"] == 2
    # the crash came between the checkpoint and the log line of epoch 2: the log lags, resume fixes it
    assert len((entry / "history.jsonl").read_text().splitlines()) == 1
    p = run_child(tmp_path / "cache", tmp_path / "out2", c)
    assert p.returncode == 0, p.stderr
    out = read_out(tmp_path / "out2")
    assert out["epochs_run"] == 2 and not out["from_cache"]               # resumed, not restarted
    assert out["digest"] == weights_digest(ref.model)
    assert without_time(out["history"]) == without_time(ref.history)
    log = [json.loads(x) for x in (entry / "history.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2, 3, 4]


def test_resume_after_sigkill_mid_epoch_equals_uninterrupted_run(data, tmp_path):
    tr, _ = data
    c = cfg(**RESUME_CFG)
    with one_thread():
        ref = train(c, tr, device="cpu", cache_dir=tmp_path / "ref", progress=False)
    entry = tmp_path / "cache" / ref.path.name
    log = entry / "history.jsonl"
    child = subprocess.Popen([sys.executable, *helper_args(tmp_path / "cache", tmp_path / "o", c, "--sleep", "0.03")],
                             env=child_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and child.poll() is None:
            if log.exists() and len(log.read_text().splitlines()) >= 1:
                time.sleep(0.05)                          # into epoch 2
                child.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, "the child finished before it could be killed"
    assert not (entry / "COMPLETE").exists()
    p = run_child(tmp_path / "cache", tmp_path / "out", c)
    assert p.returncode == 0, p.stderr
    out = read_out(tmp_path / "out")
    assert 1 <= out["epochs_run"] <= 3
    assert out["digest"] == weights_digest(ref.model)
    assert without_time(out["history"]) == without_time(ref.history)


# ---------------------------------------------------------------------------------------------
# DDP on CPU (gloo, 2 processes)

@pytest.mark.slow
def test_ddp_gloo_two_processes(tmp_path):
    """251 training images (the last batch of 59 splits 30 + 29) and 33 validation images
    (17 + 16): nothing padded or counted twice, and the same model and metrics as one process."""
    tr, va = easy_data(251, 0), easy_data(33, 1)
    c = cfg(epochs=2, batch_size=64, lr=0.2)
    attack = {"name": "fgsm", "eps": 0.1}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           *helper_args(tmp_path / "cache", tmp_path / "out", c, "--num-images", "251", "--val", "33",
                        "--eval-attack", json.dumps(attack))]
    p = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    r0, r1 = read_out(tmp_path / "out", 0), read_out(tmp_path / "out", 1)
    # same model and same (all-reduced) metrics on both ranks; every example seen once per epoch
    assert r0["digest"] == r1["digest"] and r0["history"] == r1["history"]
    assert [h["n_seen"] for h in r0["history"]] == [251] * 2
    assert [h["val_n"] for h in r0["history"]] == [33] * 2
    # only rank 0 writes
    assert r0["writes"] > 0 and r1["writes"] == 0
    entry = next((tmp_path / "cache").iterdir())
    assert (entry / "COMPLETE").exists() and len((entry / "history.jsonl").read_text().splitlines()) == 2
    # same semantics as one process: the two shards of a step are the one-process batch, so a
    # linear model (no BatchNorm) ends with the same weights and metrics up to rounding
    with one_thread():
        one = train(c, tr, val_data=va, eval_attack=attack, device="cpu", cache_dir=tmp_path / "one", progress=False)
    assert one.key == r0["key"]
    w1 = torch.cat([v.flatten().double() for _, v in sorted(one.model.state_dict().items())])
    assert torch.allclose(torch.tensor(r0["weights"], dtype=torch.float64), w1, atol=1e-5)
    for a, b in zip(r0["history"], one.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-5)
        for k in ("train_acc", "val_acc", "val_robust_acc", "n_seen", "val_n"):
            assert a[k] == pytest.approx(b[k], abs=1e-9), k
    # the DDP run's entry is the cache of the one-process call with the same config and data
    again = train(c, tr, val_data=va, eval_attack=attack, device="cpu", cache_dir=tmp_path / "cache", progress=False)
    assert again.from_cache and weights_digest(again.model) == r0["digest"]


@pytest.mark.slow
def test_ddp_batchnorm_world_size_is_in_the_key_on_cpu(tmp_path):
    """BatchNorm statistics are per process (no SyncBatchNorm on CPU): a 2-process run of a model
    with BatchNorm is another entry, and a 1-process call never returns it."""
    c = cfg(model="resnet18", model_kwargs={"width": 4}, epochs=1, batch_size=32, lr=0.05)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           *helper_args(tmp_path / "cache", tmp_path / "out", c, "--num-images", "96")]
    p = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    r0 = read_out(tmp_path / "out", 0)
    with one_thread():
        one = train(c, easy_data(96, 0), device="cpu", cache_dir=tmp_path / "cache", progress=False)
    assert not one.from_cache and one.key != r0["key"]
    assert one.key == T.run_key(c, easy_data(96, 0)) and r0["key"] == T.run_key(c, easy_data(96, 0), world_size=2)
    assert len(list((tmp_path / "cache").iterdir())) == 2


# ---------------------------------------------------------------------------------------------
# streaming from an ImageFolder

@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    "easy_data(120, 0) written as grey PNG files in an ImageFolder layout, and the same data in memory."
    root = write_folder(tmp_path_factory.mktemp("folder") / "train", easy_data(120, 0))
    from robbook.data import load_folder
    d = easy_data(120, 0)
    return root, load_folder(root, mode="L"), d.subset(folder_order(d))


def test_streaming_folder_trains_like_the_in_memory_data(folder, tmp_path):
    root, ds, mem = folder
    assert torch.equal(ds.y, mem.y) and torch.equal(torch.stack([ds[i][0] for i in range(len(ds))]), mem.x)
    c = cfg(epochs=2, batch_size=32, method="pgd", eps=0.05, steps=2, augment="translate")
    a = train(c, mem, device="cpu", cache_dir=tmp_path / "a", progress=False)
    b = train(c, ds, device="cpu", cache_dir=tmp_path / "b", progress=False, num_workers=0)
    assert weights_digest(a.model) == weights_digest(b.model)                 # the same run, streamed
    assert without_time(a.history) == without_time(b.history)
    assert a.key != b.key and json.loads((b.path / "config.json").read_text())["train_data"] == ds.fingerprint()
    w = train(c, ds, device="cpu", cache_dir=tmp_path / "w", progress=False, num_workers=2)
    assert weights_digest(w.model) == weights_digest(a.model)                 # decoding in worker processes
    again = train(c, ds, device="cpu", cache_dir=tmp_path / "b", progress=False)
    assert again.from_cache and weights_digest(again.model) == weights_digest(b.model)
    r = T.load_trained(b.path)
    assert r.from_cache and weights_digest(r.model) == weights_digest(b.model) and r.history == b.history


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_streaming_peak_memory_does_not_grow_with_the_data(tmp_path):
    """Smooth RGB images of 96x96 (27 kB decoded), 64 of them and 512 (14 MB decoded): one
    streamed epoch raises the peak memory of the process by the same amount for both (within
    4 MB), while decoding the larger set into memory, as `train` needed before, raises it by at
    least its size. Measured in a child process (tests/train_helpers/peak_memory.py)."""
    write_smooth_folders(tmp_path)
    env = dict(child_env(), MALLOC_MMAP_THRESHOLD_="131072")
    p = subprocess.run([sys.executable, str(HELPER.with_name("peak_memory.py")), str(tmp_path / "cache"),
                        str(tmp_path / "64"), str(tmp_path / "512")], env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    small, large = [json.loads(line) for line in p.stdout.splitlines()]
    print(small, large)
    assert large["in_memory_kb"] > 14_000                             # the measurement sees data held in memory
    assert large["streamed_kb"] - small["streamed_kb"] < 4_000        # streaming: bounded by the batch


def test_streaming_resume_after_crash_equals_uninterrupted_run(folder, tmp_path):
    root, ds, _ = folder
    c = cfg(epochs=3, batch_size=32, method="pgd", eps=0.05, steps=2, augment="translate")
    with one_thread():
        ref = train(c, ds, device="cpu", cache_dir=tmp_path / "ref", progress=False, num_workers=0)
    p = run_child(tmp_path / "cache", tmp_path / "out1", c, "--folder", str(root), "--exit-after", "1")
    assert p.returncode == 17, p.stderr
    p = run_child(tmp_path / "cache", tmp_path / "out2", c, "--folder", str(root), "--num-workers", "2")
    assert p.returncode == 0, p.stderr
    out = read_out(tmp_path / "out2")
    assert out["epochs_run"] == 2 and out["key"] == ref.key
    assert out["digest"] == weights_digest(ref.model)
    assert without_time(out["history"]) == without_time(ref.history)


# ---------------------------------------------------------------------------------------------
# torch.compile

@pytest.mark.slow
def test_compile_flag_gives_the_same_result_within_tolerance(data, tmp_path, monkeypatch):
    """`compile=True` traces the training forward with torch.compile; here with the `aot_eager`
    backend (dynamo + AOT autograd, no C++ code generation, which takes minutes on 2 cores; the
    default inductor backend gave a largest weight difference of 7e-9 in a manual run).
    Tolerance: weights within 1e-5, losses within 1e-6."""
    tr, _ = data
    calls = []
    real = torch.compile

    def compile_aot_eager(model, **kw):
        calls.append(type(model).__name__)
        return real(model, backend="aot_eager", **kw)
    monkeypatch.setattr(torch, "compile", compile_aot_eager)
    c = cfg(epochs=2, method="pgd", eps=0.05, steps=2)
    a = train(c, tr, device="cpu", cache_dir=tmp_path / "a", progress=False)
    assert not calls
    b = train(c.replace(compile=True), tr, device="cpu", cache_dir=tmp_path / "b", progress=False)
    assert calls and a.key != b.key
    for (k, u), (_, v) in zip(sorted(a.model.state_dict().items()), sorted(b.model.state_dict().items())):
        assert torch.allclose(u, v, atol=1e-5), k
    for x, y in zip(a.history, b.history):
        assert x["train_loss"] == pytest.approx(y["train_loss"], abs=1e-6)
    assert b.model(tr.float()[:4]).shape == (4, 4)          # the returned model is the plain module


# ---------------------------------------------------------------------------------------------
# linear probes

def test_linear_probe_keeps_the_best_validation_epoch():
    g = torch.Generator().manual_seed(0)
    Xt, Xv = torch.randn(200, 5, generator=g), torch.randn(100, 5, generator=g)
    yt, yv = (Xt[:, 0] > 0).long(), (Xv[:, 0] > 0).long()
    scripted = iter([0.2, 0.5, 0.9, 0.4, 0.3])
    seen = []

    def score(logits, y):
        seen.append(logits.clone())
        return next(scripted)
    head, hist, best = train_linear_probe(Xt, yt, Xv, yv, epochs=5, lr=0.05, seed=0, score=score, progress=False)
    assert best == 3 and [h["val_score"] for h in hist] == [0.2, 0.5, 0.9, 0.4, 0.3]
    with torch.no_grad():
        out = head(Xv)
    assert torch.allclose(out, seen[2]) and not torch.allclose(out, seen[-1])
    # accuracy by default: the returned head scores the best validation accuracy of the history
    head, hist, best = train_linear_probe(Xt, yt, Xv, yv, epochs=10, lr=0.1, seed=1, progress=False)
    acc = (head(Xv).argmax(1) == yv).float().mean().item()
    assert acc == pytest.approx(max(h["val_score"] for h in hist)) == pytest.approx(hist[best - 1]["val_score"])
    assert acc > 0.9
    with pytest.raises(ValueError, match="epochs"):
        train_linear_probe(Xt, yt, Xv, yv, epochs=0)


def test_extract_features(data, tmp_path):
    tr, _ = data
    r = train(cfg(), tr, device="cpu", cache_dir=tmp_path, progress=False)
    f, y = T.extract_features(r.model, tr, batch_size=100)
    assert f.shape == (len(tr), 64) and torch.equal(y, tr.y)
    with torch.no_grad():
        assert torch.allclose(r.model.head(f), r.model(tr.float()), atol=1e-5)


def test_code_version_ignores_comments_and_docstrings_only():
    a = 'def f(x):\n    "doc"\n    return x + 1  # note\n'
    b = '# header\ndef f(x):\n    """another doc"""\n\n    return x+1\n'
    c = 'def f(x):\n    "doc"\n    return x + 2\n'
    assert TK._code_digest(a) == TK._code_digest(b) != TK._code_digest(c)
    assert T.code_version() == T.code_version() and len(T.code_version()) == 16


def test_channels_last_only_for_models_with_4d_weights():
    """On CUDA, train() converts a model to channels_last; the P4 group-convolution models have 5-D weights,
    which torch cannot convert (this crashed every GCNN run on a GPU), so they are left as they are."""
    from robbook.models import build_model
    from robbook.train.loop import _channels_last_ok
    gcnn, cnn = build_model("kamath_gcnn", num_classes=10, in_channels=1), build_model("resnet18", num_classes=10)
    assert any(p.dim() == 5 for p in gcnn.parameters())
    with pytest.raises(RuntimeError, match="rank 4"):
        gcnn.to(memory_format=torch.channels_last)
    assert not _channels_last_ok(gcnn)
    assert _channels_last_ok(cnn)
    cnn.to(memory_format=torch.channels_last)        # and those convert


# ---------------------------------------------------------------------------------------------
# issue #20: global state restored, the world size in the key wherever it shapes the run

def test_backend_scope_restores_cublas_workspace_config(monkeypatch):
    "The deterministic settings of a CUDA run leave no trace: CUBLAS_WORKSPACE_CONFIG included."
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    settings = TL._backend_settings(cfg(deterministic=True), "cuda")
    assert settings["CUBLAS_WORKSPACE_CONFIG"]
    before = TL._current_backend_settings()
    with TL._backend_scope(settings):
        assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == settings["CUBLAS_WORKSPACE_CONFIG"]
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ and TL._current_backend_settings() == before
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")        # a user's own value is kept, and kept after
    with TL._backend_scope(settings):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_world_size_is_in_the_key_wherever_it_changes_the_run():
    """34 images, batch 16: one process takes 3 steps an epoch, 4 processes 2 (the last batch of 2 would
    leave two processes empty); random attack starts, augmentation and dropout draw per process."""
    from robbook.models import build_model
    tr = easy_data(34, 0)
    lin = build_model("linear", num_classes=4, in_channels=1)
    assert T.steps_per_epoch(34, 16, 1) == 3 and T.steps_per_epoch(34, 16, 4) == 2
    c = cfg(batch_size=16)
    assert T.world_shapes_run(c, lin, 34, 4)                            # other steps per epoch
    assert not T.world_shapes_run(c, lin, 32, 4) and not T.world_shapes_run(c, lin, 34, 1)
    for kw in [{"method": "pgd", "eps": 0.1}, {"method": "trades", "eps": 0.1}, {"augment": "translate"},
               {"method": "half_half", "eps": 0.1, "random_start": False}]:
        assert T.world_shapes_run(cfg(batch_size=16, **kw), lin, 32, 2), kw
    assert not T.world_shapes_run(cfg(batch_size=16, method="pgd", eps=0.1, random_start=False), lin, 32, 2)
    assert T.world_shapes_run(c, build_model("kamath_stdcnn"), 32, 2)   # dropout: a mask per process
    keys = {T.run_key(c, tr), T.run_key(c, tr, world_size=4), T.run_key(c, tr, world_size=2)}
    assert len(keys) == 3 and T.run_key(c, tr, world_size=1) == T.run_key(c, tr)


@pytest.mark.slow
def test_a_three_process_run_is_not_served_as_the_one_process_model(tmp_path):
    """32 images, batch 15 (3 × 5): one process takes 3 steps an epoch, three take 2; training the
    3-process model first must not make the 1-process call return it."""
    c = cfg(epochs=1, batch_size=15, lr=0.2)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "3",
           *helper_args(tmp_path / "cache", tmp_path / "out", c, "--num-images", "32")]
    p = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    r0 = read_out(tmp_path / "out", 0)
    with one_thread():
        one = train(c, easy_data(32, 0), device="cpu", cache_dir=tmp_path / "cache", progress=False)
    assert not one.from_cache and one.key != r0["key"]
    assert json.loads((one.path / "result.json").read_text())["meta"]["batches_per_epoch"] == 3


# ---------------------------------------------------------------------------------------------
# issue #20 mutation check: the attacks inside the objectives, and every attack setting in the key

def test_pgd_examples_start_where_the_config_says():
    """`random_start=False` (Ilyas et al., App. C.3) is one sign step from the image itself, whatever the
    random state; `random_start=True` draws its start (two seeds, two results)."""
    m, x, y = _tiny()
    c = cfg(method="pgd", eps=0.1, alpha=0.04, steps=1, random_start=False, num_classes=3)
    xr = x.clone().requires_grad_(True)
    g, = torch.autograd.grad(_ce(m(xr), y), xr)
    by_hand = (x + 0.04 * g.sign()).clamp(0, 1)
    runs = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        runs.append(TO._pgd_examples(c, m, x, y))
    assert torch.allclose(runs[0], by_hand, atol=1e-6) and torch.equal(runs[0], runs[1])
    starts = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        starts.append(TO._pgd_examples(c.replace(random_start=True), m, x, y))
    assert (starts[0] - starts[1]).abs().max() > 1e-3 and (starts[0] - by_hand).abs().max() > 1e-3


def test_trades_perturb_by_hand():
    """The TRADES inner maximisation written out (Zhang et al. 2019): from x + 0.001 N(0, I), `steps` sign
    steps ascending KL(softmax f(x) || softmax f(x')), each projected onto the l-inf ball and [0, 1]."""
    m, x, _ = _tiny()
    eps, alpha = 0.1, 0.03
    torch.manual_seed(5)
    got = T.trades_perturb(m, x, eps=eps, alpha=alpha, steps=3, norm="linf")
    torch.manual_seed(5)
    with torch.no_grad():
        p = torch.softmax(m(x), 1)
    lo, hi = (-x).clamp(min=-eps), (1 - x).clamp(max=eps)
    d = torch.maximum(torch.minimum(0.001 * torch.randn_like(x), hi), lo)
    for _ in range(3):
        xa = (x + d).requires_grad_(True)
        kl = (p * (p.log() - torch.log_softmax(m(xa), 1))).sum()
        g, = torch.autograd.grad(kl, xa)
        d = torch.maximum(torch.minimum(d + alpha * g.sign(), hi), lo)
    assert torch.allclose(got, (x + d).clamp(0, 1), atol=1e-6)
    assert (got - x).abs().max() > 2 * alpha                   # it moved: three steps, not a no-op


def test_every_attack_setting_is_in_the_model_key():
    "Two adversarial trainings that differ in one attack setting (the start included) never share a cache entry."
    tr = easy_data(64, 0)
    base = cfg(method="pgd", eps=0.1, steps=3, alpha=0.03, random_start=True, attack_bn="eval")
    variants = [dict(random_start=False), dict(steps=4), dict(alpha=0.02), dict(eps=0.2), dict(norm="l2"),
                dict(attack_bn="train"), dict(method="trades"), dict(method="half_half")]
    keys = [T.run_key(base, tr)] + [T.run_key(base.replace(**v), tr) for v in variants]
    assert len(set(keys)) == len(keys)
