"""`python -m robbook bench eval`: the eval-only options reach `robbook.bench.eval_benchmark`; bad ones are refused."""
import pytest


def test_bench_eval_passes_n_and_models(monkeypatch, capsys):
    import robbook.bench
    from robbook.bench import main as bench_main
    calls = []
    monkeypatch.setattr(robbook.bench, "eval_benchmark", lambda n=500, device="cpu", models=(), versions=(), chunk=100,
                        reference="published", show=True: calls.append(dict(n=n, device=device, models=models,
                                                                            reference=reference)))
    assert bench_main(["eval", "--n", "600", "--models", "pgd-linf-0.2,pgd-l2-1.0", "--device", "cpu"]) == 0
    assert bench_main(["eval", "--n", "8", "--reference", "torchattacks"]) == 0
    assert calls == [dict(n=600, device="cpu", models=("pgd-linf-0.2", "pgd-l2-1.0"), reference="published"),
                     dict(n=8, device="cpu", models=(), reference="torchattacks")]
    for bad in (["eval", "--n", "0"], ["eval", "--n", "many"], ["eval", "--n"], ["attacks", "--n", "5"],
                ["eval", "--reference", "autoattack"], ["attacks", "--reference", "published"]):
        assert bench_main(bad) == 2, bad
        assert "usage" in capsys.readouterr().err


def test_bench_eval_rejects_unknown_models():
    from robbook.bench import eval_benchmark
    with pytest.raises(ValueError, match=r"models \['resnet'\] are not benchmark models; allowed values"):
        eval_benchmark(n=4, models=("resnet",))


def test_reference_runs_autoattack_at_the_published_iterations():
    """The reference is torchattacks' AutoAttack with APGD-CE, APGD-T and FAB-T at Croce & Hein's 100 iterations
    (torchattacks ships 10), Square at 5,000 queries; an unknown reference is refused before any work."""
    torchattacks = pytest.importorskip("torchattacks")
    import torch
    from robbook.bench import REFERENCES, _reference_attack, eval_benchmark
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 10))
    for ref, its in (("published", 100), ("torchattacks", 10)):
        _, stages = _reference_attack(torchattacks.AutoAttack, model, "linf", 0.1, ref)
        names = [type(a).__name__ for a in stages]
        assert names == ["APGD", "APGDT", "FAB", "Square"], names
        assert [a.steps for a in stages[:3]] == [its] * 3 and stages[3].n_queries == 5000
        assert REFERENCES[ref] == its
    with pytest.raises(ValueError, match=r"reference='authors' is not allowed; allowed values"):
        eval_benchmark(n=4, reference="authors")


def _audit_line(**kw):
    line = {"model": "Net", "weights": "w1", "points": "p1", "n": 200, "norm": "linf", "eps": 0.1,
            "fast_overrides": {"n_queries": 300}, "fast": 0.40, "standard": 0.40, "fast_only": 0, "standard_only": 0,
            "seconds": {"fast": 1.0, "standard": 3.0}}
    return {**line, **kw}


def test_bench_fast_reads_audit_files(tmp_path, capsys):
    """`bench fast FILE...`: one row per model and setting (repeats dropped), the most optimistic first, and
    `within` is False from a gap above 1 point; unreadable lines and missing files get a clear error."""
    import json
    from robbook.bench import fast_audit, main as bench_main
    a, b = tmp_path / "kamath.jsonl", tmp_path / "tsipras.jsonl"
    a.write_text("\n".join(json.dumps(_audit_line(**kw)) for kw in ({}, {}, {"weights": "w2", "fast": 0.415})) + "\n")
    b.write_text(json.dumps(_audit_line(weights="w3", fast=0.405, fast_only=1)) + "\n")
    rows = fast_audit([a, b], show=False)
    assert [(r["run"], r["weights"], r["within"]) for r in rows] == [
        ("kamath", "w2", False), ("tsipras", "w3", True), ("kamath", "w1", True)]
    assert bench_main(["fast", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "within 1 point of standard: 2 of 3" in out and "+1.5" in out
    assert bench_main(["fast", str(tmp_path / "none.jsonl")]) == 2 and "not found" in capsys.readouterr().err
    assert bench_main(["fast"]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"fast": 1}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl, line 1: not a line written by evaluate_robust's audit"):
        fast_audit([bad], show=False)


def test_python_m_robbook_bench_fast(tmp_path, capsys):
    "`python -m robbook bench fast FILE` reaches the same summary; files are refused for the other benchmarks."
    import json
    from robbook.run import main
    f = tmp_path / "moayeri.jsonl"
    f.write_text(json.dumps(_audit_line()) + "\n")
    assert main(["bench", "fast", str(f)]) == 0 and "within 1 point of standard: 1 of 1" in capsys.readouterr().out
    assert main(["bench", "eval", str(f)]) == 2
