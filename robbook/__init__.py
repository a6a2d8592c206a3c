"""robbook: the package of a reproduction book of four adversarial-robustness papers.

Where to start:

    from robbook.data import load                  # Fashion-MNIST, MNIST, CIFAR, ImageNet folders as tensors
    from robbook.train import TrainConfig, train   # standard / PGD / TRADES / half-half training, cached
    from robbook.evaluate import evaluate_robust   # worst case over APGD-CE, APGD-T and Square, per example
    from robbook.report import gap, Claim          # effects with paired-bootstrap intervals, verdicts

    acc = evaluate_robust(model, x, y, norm="linf", eps=8 / 255)   # x in [0, 1]; model takes [0, 1] inputs
    print(acc.accuracy, acc.description, acc.flags)

Modules, from the bottom layer up: theory (closed forms of each paper), profiles, config; data, transforms,
models; attacks; evaluate; metrics, train, linear; launch; ilyas, distshift (chapter data); report, widgets,
plots; run, bench (the command line: `python -m robbook --help`). Each module's docstring says what it holds.
"""
__version__ = "0.1.0"
