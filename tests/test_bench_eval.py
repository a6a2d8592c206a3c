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
