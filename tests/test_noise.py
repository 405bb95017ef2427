"""Noise models (prunekit.noise): statistics, exact counts, seeding and bad input."""

from __future__ import annotations

import pytest
import torch

from prunekit import PrunekitError
from prunekit.evaluation.noise import corrupt, gaussian_noise, salt_pepper_noise


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_gaussian_sigma_before_clipping_matches_request() -> None:
    x = torch.full((200, 1, 28, 28), 0.5)
    for sigma in (0.05, 0.1, 0.3):
        noise = gaussian_noise(x, sigma, gen(1), clip=False) - x
        # 156800 draws: the s.e. of the std estimate is sigma / sqrt(2n) ~ 0.0018 sigma.
        assert noise.std().item() == pytest.approx(sigma, rel=0.01)
        assert abs(noise.mean().item()) < 0.01 * sigma


def test_gaussian_clipped_to_unit_interval_and_input_untouched() -> None:
    x = torch.rand(50, 1, 8, 8, generator=gen(0))
    before = x.clone()
    out = gaussian_noise(x, 0.5, gen(1))
    assert out.min() >= 0 and out.max() <= 1
    assert (out == 0).any() and (out == 1).any()  # sigma 0.5 does hit both bounds
    assert torch.equal(x, before)
    # Clipping is the only difference from the unclipped version.
    assert torch.equal(out, gaussian_noise(x, 0.5, gen(1), clip=False).clamp(0, 1))


def test_salt_pepper_exact_fraction_half_each() -> None:
    x = torch.full((100, 1, 28, 28), 0.5)
    out = salt_pepper_noise(x, 0.1, gen(0))
    # round(0.1 * 784) = 78 pixels per image, 39 set to 0 and 39 to 1, the rest untouched.
    pepper = (out == 0).flatten(1).sum(1)
    salt = (out == 1).flatten(1).sum(1)
    assert pepper.tolist() == [39] * 100 and salt.tolist() == [39] * 100
    assert int((out == 0.5).sum()) == 100 * (784 - 78)


def test_salt_pepper_odd_count_splits_half_half_in_expectation() -> None:
    x = torch.full((2000, 1, 28, 28), 0.5)
    out = salt_pepper_noise(x, 0.05, gen(3))  # round(39.2) = 39 pixels, odd
    pepper = (out == 0).flatten(1).sum(1)
    salt = (out == 1).flatten(1).sum(1)
    assert ((pepper + salt) == 39).all()
    assert set(pepper.unique().tolist()) == {19, 20}
    # The extra pixel is a fair coin: 2000 coins -> 1000 +- 22 (1 s.d.); 5 s.d. here.
    assert abs(int((pepper == 20).sum()) - 1000) < 112


def test_salt_pepper_hits_all_channels_of_a_pixel() -> None:
    x = torch.full((20, 3, 8, 8), 0.5)
    out = salt_pepper_noise(x, 0.25, gen(0))  # 16 of 64 locations
    hit = out != 0.5
    assert torch.equal(hit[:, 0], hit[:, 1]) and torch.equal(hit[:, 0], hit[:, 2])
    assert hit[:, 0].flatten(1).sum(1).tolist() == [16] * 20


def test_salt_pepper_density_one_and_flat_inputs() -> None:
    out = salt_pepper_noise(torch.full((4, 10), 0.5), 1.0, gen(0))
    assert (out == 0).sum(1).tolist() == [5] * 4 and (out == 1).sum(1).tolist() == [5] * 4


@pytest.mark.parametrize("kind,level", [("gaussian", 0.2), ("saltpepper", 0.1)])
def test_same_seed_same_images_other_seed_different(kind: str, level: float) -> None:
    x = torch.rand(16, 1, 28, 28, generator=gen(0))
    a, b, c = (
        corrupt(x, kind, level, gen(7)),
        corrupt(x, kind, level, gen(7)),
        corrupt(x, kind, level, gen(8)),
    )
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_zero_noise_is_identity() -> None:
    x = torch.rand(8, 1, 28, 28, generator=gen(0))
    assert torch.equal(gaussian_noise(x, 0.0, gen(0)), x)
    assert torch.equal(salt_pepper_noise(x, 0.0, gen(0)), x)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x: gaussian_noise(x, -0.1), "sigma must be a finite number >= 0"),
        (lambda x: gaussian_noise(x, float("nan")), "sigma must be a finite number >= 0"),
        (lambda x: salt_pepper_noise(x, -0.01), "density must be in [0, 1]"),
        (lambda x: salt_pepper_noise(x, 1.5), "density must be in [0, 1]"),
        (lambda x: gaussian_noise(x * 255, 0.1), "images must be scaled to [0, 1]"),
        (lambda x: salt_pepper_noise(x - 0.5, 0.1), "images must be scaled to [0, 1]"),
        (lambda x: gaussian_noise((x * 255).to(torch.uint8), 0.1), "floating images"),
        (lambda x: corrupt(x, "speckle", 0.1), "unknown noise kind 'speckle'"),
    ],
)
def test_bad_input_says_so(call, message: str) -> None:
    x = torch.rand(4, 1, 8, 8, generator=gen(0))
    with pytest.raises(PrunekitError, match=None) as err:
        call(x)
    assert message in str(err.value)
