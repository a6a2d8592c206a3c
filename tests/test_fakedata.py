"""The generated data sets of tests/fakedata.py are read by the real loaders (the tiny runs depend on it)."""
import fakedata as F
from robbook import data as D


def test_generated_sets_load_through_the_real_loaders(tmp_path):
    F.write_mnist(tmp_path, n_train=30, n_test=20)
    F.write_cifar(tmp_path, per_batch=6, n_test=10)
    F.write_cifar(tmp_path, "cifar100", per_batch=40, n_test=10)
    m = D.load("mnist", "train", root=tmp_path)
    assert m.x.shape == (30, 1, 28, 28) and sorted(set(m.y.tolist())) == list(range(10))
    c = D.load("cifar10", "test", root=tmp_path)
    assert c.x.shape == (10, 3, 32, 32) and len(D.load("cifar10", "train", root=tmp_path)) == 30
    assert len(D.load("cifar100", "train", root=tmp_path)) == 200
    F.write_imagenet(tmp_path / "inet", per_class=2, size=16)
    ri = D.restricted_imagenet(tmp_path / "inet", "train", size=16)
    assert len(ri) == 2 * 9 and sorted(set(ri.y.tolist())) == list(range(9))


def test_classes_are_separable():
    "Class templates differ by far more than the noise, so a tiny model can learn them."
    x, y = F.class_images(200, (8, 8), seed=0)
    means = [x[y == k].reshape(-1, 64).mean(0) for k in range(10)]
    nearest = [min(range(10), key=lambda k: ((xi.reshape(-1).astype(float) - means[k]) ** 2).sum()) for xi in x]
    assert (sum(int(a == b) for a, b in zip(nearest, y)) / len(y)) > 0.95
