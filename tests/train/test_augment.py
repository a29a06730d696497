"""Tests of the batched augmentation: shapes, determinism, the identity, colour ranges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsdal_wsi.train.augment import (
    STRONG,
    WEAK,
    AugmentParams,
    augment_batch,
    center_crop,
    matched_shifts,
    normalise,
    stain_jitter,
    with_stain_jitter,
)


@pytest.fixture
def patches() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (6, 3, 48, 48), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("params", [WEAK, STRONG])
def test_shape_range_and_determinism(patches, params):
    a = augment_batch(
        patches, patch_px=32, params=params, generator=torch.Generator().manual_seed(3)
    )
    b = augment_batch(
        patches, patch_px=32, params=params, generator=torch.Generator().manual_seed(3)
    )
    c = augment_batch(
        patches, patch_px=32, params=params, generator=torch.Generator().manual_seed(4)
    )
    assert a.shape == (6, 3, 32, 32) and a.dtype == torch.float32
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_identity_is_the_centre_crop(patches):
    out = augment_batch(
        patches, patch_px=32, params=AugmentParams(flips=False), generator=torch.Generator()
    )
    ref = center_crop(patches, 32).float() / 255
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_flips_and_quarter_turns_keep_the_pixels(patches):
    # flips and 90° rotations only permute pixels of the centre crop
    out = augment_batch(
        patches,
        patch_px=32,
        params=AugmentParams(flips=True),
        generator=torch.Generator().manual_seed(1),
    )
    crop = center_crop(patches, 32).float() / 255
    for i in range(len(patches)):
        a = np.sort(out[i].numpy().ravel())
        b = np.sort(crop[i].numpy().ravel())
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_strong_changes_colour_more_than_weak():
    flat = torch.full((32, 3, 48, 48), 128, dtype=torch.uint8)
    flat[:, 0] = 200
    g = torch.Generator().manual_seed(0)
    weak = augment_batch(flat, patch_px=32, params=WEAK, generator=g)
    strong = augment_batch(flat, patch_px=32, params=STRONG, generator=g)
    spread = lambda x: float(x.mean(dim=(2, 3)).std(dim=0).mean())  # noqa: E731
    assert spread(strong) > spread(weak) > 0


def test_blur_keeps_the_mean():
    from wsdal_wsi.train.augment import _blur

    x = torch.rand(3, 3, 24, 24)
    y = _blur(x, torch.tensor([0.0, 1.0, 2.0]), max_sigma=2.0)
    torch.testing.assert_close(y[0], x[0], atol=1e-4, rtol=0)  # sigma 0: a delta
    assert float(y[2].std()) < float(x[2].std())
    torch.testing.assert_close(y.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=0.02, rtol=0)


def test_normalise_and_crop():
    x = torch.ones(1, 3, 4, 4) * 0.5
    y = normalise(x, (0.5, 0.25, 0.0), (1.0, 0.5, 0.5))
    assert y[0, :, 0, 0].tolist() == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="cannot crop"):
        center_crop(x, 8)
    with pytest.raises(ValueError, match=r"expected \(B, 3, C, C\)"):
        augment_batch(
            torch.zeros(2, 4, 8, 8, dtype=torch.uint8),
            patch_px=4,
            params=WEAK,
            generator=torch.Generator(),
        )


def test_matched_shifts_jitter_the_negatives_like_the_positive_copies():
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([1, 0] * 4000)
    s = matched_shifts(labels, radius_px=16.0, prob=2 / 3, generator=g)
    assert s.shape == (8000, 2)
    r = s.norm(dim=1)
    assert (r[labels == 1] == 0).all() and r.max() <= 16.0 + 1e-4
    moved = r[labels == 0] > 0
    assert abs(float(moved.float().mean()) - 2 / 3) < 0.03
    # uniform in the disc, as the extraction's jitter: mean radius 2/3 R
    assert abs(float(r[labels == 0][moved].mean()) - 16 * 2 / 3) < 0.3


def test_an_extra_shift_moves_the_crop():
    x = torch.zeros(2, 3, 40, 40, dtype=torch.uint8)
    x[:, :, 20, 20] = 255  # a dot at the centre of the context
    plain = AugmentParams(flips=False)
    shift = torch.tensor([[5.0, 0.0], [0.0, -3.0]])
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x, patch_px=24, params=plain, generator=g, shift_px=shift)
    # the crop window moves by (dx, dy), so the dot moves by (-dx, -dy) in the patch
    y0, x0 = divmod(int(out[0, 0].argmax()), 24)
    y1, x1 = divmod(int(out[1, 0].argmax()), 24)
    assert (y0, x0) == (12, 12 - 5) and (y1, x1) == (12 + 3, 12)


def test_stain_jitter_raises_every_view_to_its_amplitude():
    assert with_stain_jitter(WEAK, 0.0) is WEAK
    weak = with_stain_jitter(WEAK, 0.2)
    assert (weak.hed_scale, weak.hed_shift, weak.hed_mix) == (0.2, 0.2, 0.2)
    assert weak.rotate_deg == WEAK.rotate_deg and weak.brightness == WEAK.brightness
    strong = with_stain_jitter(STRONG, 0.01)  # the view's own larger jitter stays
    assert (strong.hed_scale, strong.hed_shift) == (STRONG.hed_scale, STRONG.hed_shift)


def test_stain_jitter_moves_stain_amounts_and_zero_is_the_identity():
    """HED jitter changes each patch's colour by one per-stain factor and offset: a
    haematoxylin-only patch stays on the haematoxylin direction, darker or paler."""
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    assert stain_jitter(x, scale=0.0, shift=0.0, generator=g) is x
    y = stain_jitter(x, scale=0.3, shift=0.1, generator=g)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert (y - x).abs().mean() > 0.01
    # per sample one transform: the mean colour shifts differ between samples
    shift = (y - x).mean(dim=(2, 3))
    assert shift.std(dim=0).max() > 1e-3
    again = stain_jitter(x, scale=0.3, shift=0.1, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(y, again)


def test_stain_mix_turns_a_pure_stain_into_another_hue():
    """With ``mix``, a haematoxylin-only patch gains other stains in proportion to its
    own amount: its hue changes, which scale and shift alone cannot do."""
    from wsdal_wsi.train.augment import _HED_FROM_RGB, _RGB_FROM_HED

    amount = torch.linspace(0.1, 1.0, 16).view(1, 1, 1, 16).expand(4, 1, 16, 16)
    h = _RGB_FROM_HED[0].view(1, 3, 1, 1)  # pure haematoxylin, rising amounts along x
    x = ((torch.exp(-amount * h) * 256.0 - 1.0) / 255.0).clamp(0, 1)

    def hed(img):
        od = -torch.log((img * 255.0 + 1.0) / 256.0)
        return torch.einsum("ij,bjhw->bihw", _HED_FROM_RGB.T, od)

    g = torch.Generator().manual_seed(2)
    scaled = hed(stain_jitter(x, scale=0.3, shift=0.0, generator=g))
    mixed = hed(stain_jitter(x, scale=0.0, shift=0.0, mix=0.3, generator=g))
    # scale alone: eosin stays ~0 wherever haematoxylin rises; mix: eosin follows it
    assert scaled[:, 1].abs().max() < 0.02
    e_slope = (mixed[:, 1, :, -1] - mixed[:, 1, :, 0]).abs().mean()
    assert e_slope > 0.05


def test_recolour_changes_the_look_not_the_geometry():
    """The cascade's distillation view: colours and focus vary per patch, but a dark spot
    stays where it was (the final model's score of the stored patch stays the target)."""
    from wsdal_wsi.train.augment import APPEARANCE, recolour

    x = torch.full((16, 3, 32, 32), 0.9)
    x[:, :, 6:12, 20:26] = 0.2  # a dark nucleus up and to the right
    y = recolour(x, params=APPEARANCE, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert (y - x).abs().mean(dim=(1, 2, 3)).min() > 1e-3  # every patch recoloured
    assert y.mean(dim=(2, 3)).std(dim=0).max() > 0.01  # each its own way
    near = torch.zeros(32, 32, dtype=torch.bool)
    near[5:13, 19:27] = True  # the nucleus and a pixel of blur around it
    for img in y:
        darkness = 1.0 - img.mean(dim=0)
        dark = (darkness - darkness.min()) > 0.5 * (darkness.max() - darkness.min())
        assert dark[near].sum() >= 30 and not dark[~near].any()
    plain = AugmentParams()  # no colour, no blur: the patch as it is
    torch.testing.assert_close(recolour(x, params=plain, generator=torch.Generator()), x)
