"robbook.transforms: exact identities, agreement between the exact and resampled transforms, ranges, seeds."
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from robbook import transforms as T


def batch(n=3, c=2, h=12, w=12, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def shifted(x, dx, dy):
    "x shifted right by dx and down by dy whole pixels, zero fill."
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    src = x[..., max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    out[..., max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)] = src
    return out


# ---------- exact identities ----------

def test_rotate_by_zero_is_identity():
    x = batch()
    assert torch.allclose(T.rotate(x, 0.0), x, atol=1e-6)
    assert torch.allclose(T.rotate_translate(x, 0.0, 0.0, 0.0), x, atol=1e-6)


def test_rotate_by_zero_is_identity_on_non_square_images():
    x = batch(h=8, w=14)
    assert torch.allclose(T.rotate(x, 0.0), x, atol=1e-6)


def test_rot90_four_times_is_identity_and_matches_torch():
    x = batch()
    y = x
    for _ in range(4):
        y = T.rot90(y)
    assert torch.equal(y, x)
    for k in range(-3, 5):
        assert torch.equal(T.rot90(x, k), torch.rot90(x, k, dims=(-2, -1)))


def test_rot90_per_example_k():
    x = batch(n=4)
    k = torch.tensor([0, 1, 2, 3])
    y = T.rot90(x, k)
    for i in range(4):
        assert torch.equal(y[i], torch.rot90(x[i], i, dims=(-2, -1)))


@pytest.mark.parametrize("deg, k", [(90.0, 1), (180.0, 2), (-90.0, 3), (270.0, 3)])
def test_rotate_multiple_of_90_matches_rot90_away_from_borders(deg, k):
    x = batch(h=16, w=16)
    inner = (..., slice(2, -2), slice(2, -2))
    assert torch.allclose(T.rotate(x, deg)[inner], T.rot90(x, k)[inner], atol=1e-5)


def test_rotate_direction_is_counter_clockwise():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 0, 4] = 1.0        # top centre
    y = T.rotate(x, 90.0)
    assert y[0, 0, 4, 0] > 0.99  # counter-clockwise: the top goes to the left


@pytest.mark.parametrize("dx, dy", [(3, 0), (0, 2), (-2, 1), (4, -3), (0, 0)])
def test_translate_by_whole_pixels_is_a_zero_filled_shift(dx, dy):
    x = batch(h=12, w=16)
    h, w = x.shape[-2:]
    assert torch.allclose(T.translate(x, dx / w, dy / h), shifted(x, dx, dy), atol=1e-5)


def test_translate_per_example():
    x = batch(n=3, h=10, w=10)
    dx = torch.tensor([0.1, -0.2, 0.0])
    y = T.translate(x, dx, 0.0)
    for i, d in enumerate([1, -2, 0]):
        assert torch.allclose(y[i:i + 1], shifted(x[i:i + 1], d, 0), atol=1e-5)


def test_rotate_per_example_matches_scalar_calls():
    x = batch(n=3)
    deg = torch.tensor([10.0, -25.0, 40.0])
    y = T.rotate(x, deg)
    for i in range(3):
        assert torch.allclose(y[i:i + 1], T.rotate(x[i:i + 1], float(deg[i])), atol=1e-6)


def test_rotate_translate_is_rotation_then_translation():
    x = torch.zeros(1, 1, 20, 20)
    x[..., 6:14, 6:14] = 1.0
    one = T.rotate_translate(x, 90.0, 0.25, 0.0)
    two = T.translate(T.rotate(x, 90.0), 0.25, 0.0)
    assert torch.allclose(one, two, atol=1e-4)


@given(dx=st.integers(-20, 20), dy=st.integers(-20, 20))
@settings(max_examples=30, deadline=None)
def test_cyclic_shift_matches_torch_roll(dx, dy):
    x = batch(h=7, w=9)
    assert torch.equal(T.cyclic_shift(x, dx, dy), torch.roll(x, (dy, dx), dims=(-2, -1)))


def test_cyclic_shift_per_example_matches_roll():
    x = batch(n=3, h=7, w=9)
    dx, dy = torch.tensor([1, -4, 10]), torch.tensor([0, 3, -8])
    y = T.cyclic_shift(x, dx, dy)
    for i in range(3):
        assert torch.equal(y[i], torch.roll(x[i], (int(dy[i]), int(dx[i])), dims=(-2, -1)))


def test_flip_and_mask():
    x = batch(n=2)
    assert torch.equal(T.flip(x), x.flip(-1))
    y = T.flip(x, torch.tensor([True, False]))
    assert torch.equal(y[0], x[0].flip(-1)) and torch.equal(y[1], x[1])


def test_uint8_input_keeps_dtype():
    x = (batch() * 255).to(torch.uint8)
    y = T.rotate(x, 0.0)
    assert y.dtype == torch.uint8 and torch.equal(y, x)
    assert T.crop_flip(x, 2, torch.Generator().manual_seed(0)).dtype == torch.uint8


# ---------- ranges, gradients, errors ----------

@given(deg=st.floats(-360, 360), dx=st.floats(-0.6, 0.6), dy=st.floats(-0.6, 0.6))
@settings(max_examples=40, deadline=None)
def test_outputs_stay_in_unit_interval(deg, dx, dy):
    x = torch.ones(2, 1, 9, 9)
    x[1] = torch.rand(1, 9, 9, generator=torch.Generator().manual_seed(1))
    y = T.rotate_translate(x, deg, dx, dy)
    assert y.min() >= 0 and y.max() <= 1


def test_every_augment_keeps_shape_and_range():
    x = batch()
    g = torch.Generator().manual_seed(0)
    for spec in [None, *T.AUGMENTS]:
        y = T.make_augment(spec)(x, g)
        assert y.shape == x.shape and y.dtype == x.dtype and y.min() >= 0 and y.max() <= 1, spec


def test_transforms_are_differentiable():
    x = batch(n=2).requires_grad_()
    loss = T.rotate_translate(x, 17.0, 0.1, -0.05).sum() + T.cyclic_shift(x, 1, 2).sum() + T.rot90(x).sum()
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        T.rotate(torch.rand(1, 8, 8), 10.0)
    with pytest.raises(ValueError, match="one per example"):
        T.rotate(batch(n=3), torch.tensor([1.0, 2.0]))


def test_make_augment_rejects_unknown_spec_listing_allowed():
    with pytest.raises(ValueError) as e:
        T.make_augment("cutout")
    for name in ["crop_flip", "flip", "rotate", "translate", "rotate_translate", "None"]:
        assert name in str(e.value)
    with pytest.raises(TypeError, match="max_deg"):
        T.make_augment("crop_flip", max_deg=10)


def test_make_augment_settings_and_callable_passthrough():
    f = T.make_augment("rotate", max_deg=5.0)
    assert f.settings == {"max_deg": 5.0}
    g = lambda x, generator=None: x * 0  # noqa: E731
    assert T.make_augment(g) is g
    x = batch()
    assert torch.equal(T.make_augment(None)(x, None), x)


# ---------- random transforms: sampled parameters and seeds ----------

def test_random_rotate_respects_range():
    x = batch(n=500, c=1, h=4, w=4)
    _, p = T.random_rotate(x, 15.0, torch.Generator().manual_seed(0), return_params=True)
    d = p["degrees"]
    assert d.abs().max() <= 15.0 and d.min() < -10 and d.max() > 10  # covers the range, both signs


def test_random_translate_respects_range():
    x = batch(n=500, c=1, h=4, w=4)
    _, p = T.random_translate(x, 0.125, torch.Generator().manual_seed(0), return_params=True)
    for k in ("dx", "dy"):
        assert p[k].abs().max() <= 0.125 and p[k].min() < -0.1 and p[k].max() > 0.1


def test_random_rotate_translate_respects_both_ranges_and_applies_them():
    x = batch(n=50, h=16, w=16)
    y, p = T.random_rotate_translate(x, 30.0, 0.1, torch.Generator().manual_seed(3), return_params=True)
    assert p["degrees"].abs().max() <= 30 and p["dx"].abs().max() <= 0.1 and p["dy"].abs().max() <= 0.1
    assert torch.allclose(y, T.rotate_translate(x, p["degrees"], p["dx"], p["dy"]), atol=1e-6)


def test_crop_flip_is_a_shift_within_pad_and_maybe_a_flip():
    x = batch(n=64, c=1, h=8, w=8)
    y, p = T.crop_flip(x, 3, torch.Generator().manual_seed(0), return_params=True)
    assert p["dx"].abs().max() <= 3 and p["dy"].abs().max() <= 3
    assert 0 < p["flipped"].sum() < 64
    for i in range(64):
        ref = shifted(x[i:i + 1], int(p["dx"][i]), int(p["dy"][i]))
        ref = ref.flip(-1) if p["flipped"][i] else ref
        assert torch.equal(y[i:i + 1], ref)


@pytest.mark.parametrize("spec", list(T.AUGMENTS))
def test_random_augments_are_reproducible_with_a_seeded_generator(spec):
    x = batch(n=8)
    f = T.make_augment(spec)
    a = f(x, torch.Generator().manual_seed(7))
    b = f(x, torch.Generator().manual_seed(7))
    c = f(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_angles_in_degrees_not_radians():
    x = torch.zeros(1, 1, 41, 41)
    x[0, 0, 19:22, 26:36] = 1.0  # a bar right of the centre
    ys, xs = torch.meshgrid(torch.arange(41.0) - 20, torch.arange(41.0) - 20, indexing="ij")
    for deg in (30.0, -60.0, 135.0):
        y = T.rotate(x, deg)[0, 0]
        angle = math.degrees(math.atan2(-(y * ys).sum(), (y * xs).sum()))  # image y axis points down
        assert abs(angle - deg) < 2.0, (deg, angle)
