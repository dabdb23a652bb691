"""Tests of batched augmentation ops and view recipes (slimssl.data.augment / views)."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from slimssl.data import RECIPES, DataError, ViewSpec, eval_transform, make_synthetic, make_views
from slimssl.data import augment as A
from slimssl.data.views import BatchAugment

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return make_synthetic(num_samples=16, num_classes=4, image_size=24, seed=0).images


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_shapes_ranges_and_determinism(name: str, batch: torch.Tensor) -> None:
    raw = make_views(name, 16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), normalize=False)
    v1, v2 = raw(batch, _gen(0))
    for v in (v1, v2):
        assert v.shape == (16, 3, 16, 16) and v.dtype == torch.float32
        assert v.min() >= 0.0 and v.max() <= 1.0
    assert not torch.allclose(v1, v2)
    w1, w2 = raw(batch, _gen(0))
    assert torch.equal(v1, w1) and torch.equal(v2, w2)
    o1, _ = raw(batch, _gen(1))
    assert not torch.allclose(v1, o1)
    normed = make_views(name, 16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    n1, _ = normed(batch, _gen(0))
    torch.testing.assert_close(n1, (v1 - 0.5) / 0.25)


def test_recipe_parameters_match_papers() -> None:
    m1, m2 = RECIPES["mocov2"]
    assert m1 == m2 and m1.crop_scale == (0.2, 1.0) and m1.jitter == (0.4, 0.4, 0.4, 0.1)
    assert (m1.jitter_p, m1.grayscale_p, m1.blur_p, m1.solarize_p) == (0.8, 0.2, 0.5, 0.0)
    b1, b2 = RECIPES["byol"]
    assert b1.crop_scale == (0.08, 1.0) and b1.jitter == (0.4, 0.4, 0.2, 0.1)
    assert (b1.blur_p, b1.solarize_p, b2.blur_p, b2.solarize_p) == (1.0, 0.0, 0.1, 0.2)
    assert RECIPES["mocov3"] == RECIPES["byol"]
    s1, _ = RECIPES["simclr"]
    assert s1.jitter == (0.8, 0.8, 0.8, 0.2) and s1.blur_p == 0.5
    for name in RECIPES:
        if name.endswith("_cifar"):
            assert RECIPES[name][0].blur_p == 0.0 and RECIPES[name][1].blur_p == 0.0
    assert RECIPES["byol_cifar"][1].solarize_p == 0.2
    with pytest.raises(DataError, match="unknown view recipe"):
        make_views("nope", 32, (0, 0, 0), (1, 1, 1))


def test_identity_pipeline_is_exact(batch: torch.Tensor) -> None:
    """Full-image crop at the same size, no other op: output = input / 255."""
    spec = ViewSpec(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0)
    out = BatchAugment(spec, 24, (0, 0, 0), (1, 1, 1))(batch, _gen(0))
    torch.testing.assert_close(out, batch.float() / 255, atol=1e-6, rtol=0)


def test_crop_boxes_inside_image_and_scale() -> None:
    boxes = A.sample_crop_boxes(2000, 32, 48, (0.2, 1.0), (3 / 4, 4 / 3), _gen(0))
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= 48 + 1e-4).all() and (boxes[:, 3] <= 32 + 1e-4).all()
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (32 * 48)
    assert area.min() >= 0.2 - 1e-4 and area.max() <= 1.0 + 1e-4
    ratio = (boxes[:, 2] - boxes[:, 0]) / (boxes[:, 3] - boxes[:, 1])
    assert ratio.min() >= 0.75 - 1e-4 and ratio.max() <= 4 / 3 + 1e-4


def test_resized_crop_hand_computed() -> None:
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4).repeat(1, 3, 1, 1)
    # top-left 2x2 box resized to 2x2 is the same pixels
    out = A.resized_crop(x, torch.tensor([[0.0, 0.0, 2.0, 2.0]]), 2)
    assert out[0, 0].tolist() == [[0.0, 1.0], [4.0, 5.0]]
    # whole 4x4 image shrunk to 2x2 averages 2x2 blocks (antialiased)
    out = A.resized_crop(x, torch.tensor([[0.0, 0.0, 4.0, 4.0]]), 2)
    assert out[0, 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]


def test_flip_hand_computed() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0]]).view(1, 1, 1, 3).repeat(2, 3, 1, 1)
    out = A.hflip(x, torch.tensor([True, False]))
    assert out[0, 0, 0].tolist() == [3.0, 2.0, 1.0] and out[1, 0, 0].tolist() == [1.0, 2.0, 3.0]


def test_grayscale_weights_on_known_pixel() -> None:
    x = torch.tensor([0.2, 0.4, 0.8]).view(1, 3, 1, 1)
    out = A.grayscale(x, torch.tensor([True]))
    expected = 0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.8
    assert torch.allclose(out.flatten(), torch.full((3,), expected))
    assert torch.equal(A.grayscale(x, torch.tensor([False])), x)


def test_solarize_threshold() -> None:
    x = torch.tensor([0.0, 0.49, 0.5, 0.9]).view(1, 1, 1, 4).repeat(1, 3, 1, 1)
    out = A.solarize(x, torch.tensor([True]))
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([0.0, 0.49, 0.5, 0.1]))


def test_colour_ops_match_torchvision() -> None:
    x = torch.rand(3, 3, 8, 8, generator=_gen(0))
    for ours, ref, f in (
        (A.adjust_brightness, TF.adjust_brightness, 1.3),
        (A.adjust_contrast, TF.adjust_contrast, 0.6),
        (A.adjust_saturation, TF.adjust_saturation, 1.7),
        (A.adjust_hue, TF.adjust_hue, -0.3),
        (A.adjust_hue, TF.adjust_hue, 0.45),
    ):
        expected = torch.stack([ref(img, f) for img in x])
        torch.testing.assert_close(ours(x, torch.full((3,), f)), expected, atol=1e-4, rtol=0)


def test_jitter_per_sample_probability_and_identity() -> None:
    x = torch.rand(400, 3, 4, 4, generator=_gen(0))
    out = A.color_jitter(x, (0.4, 0.4, 0.4, 0.1), 0.8, _gen(1))
    changed = (out - x).abs().flatten(1).amax(1) > 1e-6
    assert 0.7 < changed.float().mean() < 0.9
    assert torch.equal(A.color_jitter(x, (0.4, 0.4, 0.4, 0.1), 0.0, _gen(1)), x)


def test_gaussian_blur_matches_torchvision_and_preserves_constant() -> None:
    x = torch.rand(2, 3, 12, 12, generator=_gen(0))
    sigma = torch.tensor([0.7, 1.5])
    out = A.gaussian_blur(x, torch.tensor([True, False]), sigma, 5)
    expected = TF.gaussian_blur(x[0], [5, 5], [0.7, 0.7])
    torch.testing.assert_close(out[0], expected, atol=1e-5, rtol=0)
    assert torch.equal(out[1], x[1])
    const = torch.full((1, 3, 6, 6), 0.3)
    torch.testing.assert_close(A.gaussian_blur(const, torch.tensor([True]), torch.tensor([2.0]), 23), const)
    assert A.blur_kernel_size(224) == 23 and A.blur_kernel_size(32) == 3


def test_bad_view_inputs() -> None:
    views = make_views("mocov2_cifar", 8, (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(DataError, match="uint8"):
        views(torch.rand(2, 3, 8, 8), _gen(0))
    with pytest.raises(DataError, match="std"):
        make_views("mocov2", 8, (0.5,) * 3, (0.0, 1.0, 1.0))


def test_eval_transform(batch: torch.Tensor) -> None:
    t = eval_transform((0.5,) * 3, (0.5,) * 3)
    out = t(batch)
    torch.testing.assert_close(out, (batch.float() / 255 - 0.5) / 0.5)
    assert eval_transform((0.5,) * 3, (0.5,) * 3, image_size=12)(batch).shape == (16, 3, 12, 12)


def test_single_sample_and_non_square_input() -> None:
    """Hand values on a 20x40 single image: black stays black through every op (crop and resize
    of zeros, jitter scales or blends zeros, grey of zeros, blur of a constant, solarize below
    the threshold), so every view is (0 - 0.5) / 0.5 = -1 exactly; a uniform grey image stays
    uniform only if every crop box lies inside the image (a box reaching outside would pull in
    the resampler's zero padding) and the ops keep a grey pixel grey."""
    black = torch.zeros((1, 3, 20, 40), dtype=torch.uint8)
    grey = torch.full((1, 3, 20, 40), 128, dtype=torch.uint8)
    for name in ("mocov2", "byol", "simclr"):
        views = make_views(name, 12, (0.5,) * 3, (0.5,) * 3)
        for seed in range(4):
            v1, v2 = views(black, _gen(seed))
            assert v1.shape == v2.shape == (1, 3, 12, 12)
            assert torch.equal(v1, torch.full_like(v1, -1.0))
            assert torch.equal(v2, torch.full_like(v2, -1.0))
            for g in views(grey, _gen(seed)):
                assert float(g.amax() - g.amin()) <= 1e-5, (name, seed)
