"""`python -m robbook bench eval`: the eval-only options reach `robbook.bench.eval_benchmark`; bad ones are refused."""
import pytest


def test_bench_eval_passes_n_and_models(monkeypatch, capsys):
    import robbook.bench
    from robbook.bench import main as bench_main
    calls = []
    monkeypatch.setattr(robbook.bench, "eval_benchmark", lambda n=500, device="cpu", models=(), versions=(), chunk=100,
                        show=True: calls.append(dict(n=n, device=device, models=models)))
    assert bench_main(["eval", "--n", "600", "--models", "pgd-linf-0.2,pgd-l2-1.0", "--device", "cpu"]) == 0
    assert calls == [dict(n=600, device="cpu", models=("pgd-linf-0.2", "pgd-l2-1.0"))]
    for bad in (["eval", "--n", "0"], ["eval", "--n", "many"], ["eval", "--n"], ["attacks", "--n", "5"]):
        assert bench_main(bad) == 2, bad
        assert "usage" in capsys.readouterr().err


def test_bench_eval_rejects_unknown_models():
    from robbook.bench import eval_benchmark
    with pytest.raises(ValueError, match=r"models \['resnet'\] are not benchmark models; allowed values"):
        eval_benchmark(n=4, models=("resnet",))
