"""robbook: the package of a reproduction book of four adversarial-robustness papers.

Install: `pip install robbook` for the library (attacks, evaluation, training, the papers' theory);
`pip install 'robbook[book]'` adds what the chapters and the book need (papermill, Jupyter Book, ipywidgets,
matplotlib, cvxpy).

Quickstart (runs in seconds on a CPU; the test suite runs this very code):

    import tempfile
    import torch, torch.nn as nn
    from robbook.models import Normalize
    from robbook.attacks import pgd
    from robbook.evaluate import evaluate_robust
    from robbook.train import train
    from robbook.data import ImageData
    from robbook.theory import tsipras

    # 1. Your own model: normalisation goes inside it (robbook's attacks take images in [0, 1]).
    model = nn.Sequential(Normalize(mean=[0.5], std=[0.25]), nn.Flatten(), nn.Linear(28 * 28, 10)).eval()
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    x_adv = pgd(model, x, y, eps=8 / 255, steps=5)           # l_inf PGD (Madry et al. 2018)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6

    # 2. Robust accuracy: the per-example worst case over APGD-CE, APGD-T and Square, with sanity flags.
    r = evaluate_robust(model, x, y, norm="linf", eps=8 / 255, version="fast", n_queries=100)
    print(r.clean_accuracy, r.accuracy, r.flags)  # clean, robust, suspicious findings

    # 3. Adversarial training from a dict of TrainConfig fields (cached by config and data: a repeat loads it).
    data = ImageData(torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (64,)),
                     classes=list("0123456789"))
    res = train({"model": "mnist_cnn", "method": "pgd", "eps": 0.1, "steps": 2, "batch_size": 32}, data,
                device="cpu", cache_dir=tempfile.mkdtemp(), progress=False)
    print(res.history[-1]["train_loss"], res.from_cache)

    # 4. A paper's closed form: Tsipras et al. (2019), Theorem 2.1 (robust accuracy <= p/(1-p) * standard error).
    print(tsipras.robust_accuracy_bound(0.95, std_accuracy=0.99))

Modules, bottom layer first; a module imports only modules below it, at its top (tests/test_layers.py checks):

    run, __main__           the command line (`python -m robbook --help`), the book build
    bench                   speed benchmarks: attacks (pgd), training, evaluation
    widgets                 precomputed slider figures
    claims                  each chapter's claims decided on its run (claims.tsipras, .ilyas, .kamath, .moayeri)
    report, plots           the verdict engine and scoreboard; the book's figure style
    ilyas, distshift, linear   chapter library code (the Ilyas datasets; the Moayeri suite; Tsipras' linear model)
    launch                  torchrun / in-process training jobs, cost estimates
    train                   TrainConfig, train, linear probes (re-exported from its modules, top first:)
      train.loop            train, TrainResult, load_trained: checks, the cache decision, the epoch loop
      train.key, .objectives, .store, .dist, .probes
                            cache key and code version; losses; the cache entry on disk; DDP; linear probes
      train.config          TrainConfig, TrainConfigError, the allowed names, lr_at
    metrics                 accuracies, profiles, gaps, saliency
    evaluate                evaluate_robust (APGD-CE, APGD-T, Square), apgd
    attacks                 pgd, fgsm, deepfool, square, spatial attacks, step rules
    models                  build_model, Normalize, the architectures
    data, transforms        datasets as uint8 tensors, loaders; spatial transforms and augmentations
    config                  parameters of a run, provenance, device and cache paths
    profiles                every chapter's smoke / quick / full values
    theory                  the papers' closed forms (theory.tsipras, .ilyas, .kamath, .moayeri)

Each module's docstring says what it holds; `help(robbook.train.TrainConfig)` lists every training setting with
its allowed values.
"""
__version__ = "0.1.0"
