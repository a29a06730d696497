"""Tests of the model artifact: round trip, predict_proba, and refusing bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from wsdal_wsi.errors import ConfigError, ModelFileError
from wsdal_wsi.model.file import (
    FORMAT_NAME,
    ModelSpec,
    load_model,
    load_model_bytes,
    read_spec,
    save_model,
)
from wsdal_wsi.model.nets import CamNet, ProjNet


def _spec(**kw) -> ModelSpec:
    base = dict(
        arch="proj_resnet18",
        arch_kwargs={"width": 4, "proj_dim": 8, "input_px": None},
        patch_size_px=32,
        target_mpp=0.25,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        threshold=0.42,
        class_names=("Non-mitosis", "Mitosis"),
        candidate_params={"sigma_um": 1.0},
        merge_radius_um=5.0,
        provenance={"preset": "tiny", "stages": {"ns": {"epochs": 1}}},
    )
    base.update(kw)
    return ModelSpec(**base)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    net = ProjNet(width=4, proj_dim=8).eval()
    path = save_model(tmp_path / "m" / "model.pt", net, _spec())
    return path, net


def test_round_trip_keeps_spec_and_scores(saved):
    path, net = saved
    loaded = load_model(path, device="cpu")
    assert loaded.spec == _spec()
    assert read_spec(path).threshold == pytest.approx(0.42)
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    p = loaded.predict_proba(x)
    assert p.dtype == torch.float32 and p.shape == (5,)
    ref = torch.softmax(net((x.float() / 255 - 0.5) / 0.25), dim=1)[:, 1]
    torch.testing.assert_close(p, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loaded.predict_proba(x, batch_size=2), p)
    assert loaded.predict_proba(x[:0]).shape == (0,)


def test_loading_from_bytes_gives_the_same_model_and_names_the_file(saved):
    path, _ = saved
    data = path.read_bytes()
    shipped = load_model_bytes(data, path=path)  # e.g. from Ray's object store
    loaded = load_model(path)
    assert shipped.spec == loaded.spec and shipped.path == path
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    torch.testing.assert_close(shipped.predict_proba(x), loaded.predict_proba(x))
    with pytest.raises(ModelFileError, match=r"model\.pt: .*truncated"):
        load_model_bytes(data[: len(data) // 2], path=path)


def test_predict_proba_refuses_wrong_patches(saved):
    loaded = load_model(saved[0])
    with pytest.raises(ValueError, match=r"uint8 \(N, 3, 32, 32\)"):
        loaded.predict_proba(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="32, 32"):
        loaded.predict_proba(torch.zeros(2, 3, 40, 40, dtype=torch.uint8))


def test_other_architecture_round_trip(tmp_path):
    net = CamNet(width=4)
    path = save_model(
        tmp_path / "cam.pt", net, _spec(arch="cam_resnet18", arch_kwargs={"width": 4})
    )
    assert isinstance(load_model(path).module, CamNet)


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "nope.pt")


def test_text_file(tmp_path):
    p = tmp_path / "model.pt"
    p.write_text("this is not a model\n")
    with pytest.raises(ModelFileError, match=r"model\.pt: not a model file"):
        load_model(p)


def test_truncated_file(saved, tmp_path):
    data = saved[0].read_bytes()
    p = tmp_path / "cut.pt"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"cut\.pt: .*truncated"):
        load_model(p)


def test_foreign_torch_file(tmp_path):
    p = tmp_path / "resnet.pth"
    torch.save(CamNet(width=4).state_dict(), p)
    with pytest.raises(ModelFileError, match="not a wsdal-wsi model"):
        load_model(p)


class _RunsCode:
    """A pickled object whose loading would create a file (what a malicious model does)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_object_is_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"format": FORMAT_NAME, "obj": Path("x")}, p)  # needs unpickling a class
    with pytest.raises(ModelFileError, match=r"evil\.pt"):
        load_model(p)


def test_a_model_that_would_run_code_never_runs_and_is_called_tampered(tmp_path):
    """Finding 4: the error passed on PyTorch's advice to load with weights_only=False."""
    marker = tmp_path / "PWNED"
    p = tmp_path / "evil.pt"
    torch.save({"format": FORMAT_NAME, "format_version": 1, "obj": _RunsCode(marker)}, p)
    for read in (load_model, read_spec):
        with pytest.raises(ModelFileError) as info:
            read(p)
        msg = str(info.value)
        assert msg.startswith(f"{p}: ") and "tampered" in msg and "never loaded" in msg
        assert "weights_only" not in msg and "\n" not in msg
    assert not marker.exists()


def test_future_format_version(saved, tmp_path):
    payload = torch.load(saved[0], weights_only=True)
    payload["format_version"] = 99
    p = tmp_path / "future.pt"
    torch.save(payload, p)
    with pytest.raises(ModelFileError, match="version 99 is newer"):
        load_model(p)


def test_weights_that_do_not_fit(saved, tmp_path):
    payload = torch.load(saved[0], weights_only=True)
    spec = json.loads(payload["spec"])
    spec["arch_kwargs"]["width"] = 8
    payload["spec"] = json.dumps(spec)
    p = tmp_path / "wide.pt"
    torch.save(payload, p)
    with pytest.raises(ModelFileError, match="do not fit architecture"):
        load_model(p)


def test_unknown_architecture(saved, tmp_path):
    payload = torch.load(saved[0], weights_only=True)
    spec = json.loads(payload["spec"])
    spec["arch"] = "vit_huge"
    payload["spec"] = json.dumps(spec)
    p = tmp_path / "vit.pt"
    torch.save(payload, p)
    with pytest.raises(ModelFileError, match="unknown architecture 'vit_huge'"):
        load_model(p)


def test_malformed_spec(saved, tmp_path):
    payload = torch.load(saved[0], weights_only=True)
    payload["spec"] = "{not json"
    p = tmp_path / "bad.pt"
    torch.save(payload, p)
    with pytest.raises(ModelFileError, match="metadata is missing or malformed"):
        load_model(p)


def test_spec_validation():
    with pytest.raises(ConfigError, match="threshold must be in"):
        _spec(threshold=1.5)
    # values a forged model file could use to exhaust memory at prediction
    with pytest.raises(ConfigError, match=r"patch_size_px must be in \[8, 1024\]"):
        _spec(patch_size_px=10**9)
    with pytest.raises(ConfigError, match="target_mpp must be in"):
        _spec(target_mpp=1e6)
    with pytest.raises(ConfigError, match="merge_radius_um must be in"):
        _spec(merge_radius_um=1e9)
    with pytest.raises(ConfigError, match="mean/std must be finite"):
        _spec(mean=(0.5, float("nan"), 0.5))
    with pytest.raises(ConfigError, match="arch_kwargs must be a JSON object"):
        _spec(arch_kwargs=[1, 2])
    with pytest.raises(ConfigError, match="input_px must be in"):
        ProjNet(width=4, proj_dim=8, input_px=10**9)
    with pytest.raises(ConfigError, match="not JSON-serialisable"):
        _spec(provenance={"x": object()}).to_json()
    assert _spec().with_threshold(0.9).threshold == 0.9


def test_save_is_atomic_on_failure(tmp_path):
    p = tmp_path / "m.pt"
    with pytest.raises(ConfigError):
        save_model(p, ProjNet(width=4, proj_dim=8), _spec(provenance={"x": float("nan")}))
    assert not p.exists() and list(tmp_path.iterdir()) == []


def test_the_stain_reference_travels_with_the_model_and_is_checked(tmp_path):
    from wsdal_wsi.errors import ConfigError
    from wsdal_wsi.stain import StainEstimate

    assert _spec().stain_estimate() is None  # older models: slides as scanned
    ref = StainEstimate((0.6, 0.7, 0.3), (0.1, 0.9, 0.4), 0.8, 0.5, n_pixels=7)
    spec = _spec(stain_reference=ref.to_dict())
    path = save_model(tmp_path / "m.pt", ProjNet(width=4, proj_dim=8), spec)
    assert read_spec(path).stain_estimate().to_dict() == ref.to_dict()
    with pytest.raises(ConfigError, match="stain estimate needs the keys"):
        _spec(stain_reference={"haematoxylin": [1, 0, 0]})
