"""Hostile model files: code that would run when unpickled, damaged and forged files. Each
is refused with one ``Error:`` line naming it and exit code 2; no code runs, nothing is
written."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from wsdal_wsi.cli import app
from wsdal_wsi.model.file import FORMAT_NAME

runner = CliRunner()


class RunsCode:
    """Unpickling it would create ``marker``: what a malicious model file does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _payload(model: Path) -> dict:
    return torch.load(model, map_location="cpu", weights_only=True)


def _save(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _edit_spec(model: Path, **changes) -> bytes:
    payload = _payload(model)
    spec = json.loads(payload["spec"])
    spec.update(changes)
    payload["spec"] = json.dumps(spec)
    return _save(payload)


def _zip_not_torch() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("data.pkl", b"not a pickle")
    return buf.getvalue()


#: name -> (file bytes from (good model, marker), what the error says)
CASES: dict[str, tuple[Callable[[Path, Path], bytes], str]] = {
    "code in a torch zip": (
        lambda m, k: _save({"format": FORMAT_NAME, "format_version": 1, "x": RunsCode(k)}),
        "tampered with",
    ),
    "code in a bare pickle": (
        lambda m, k: pickle.dumps(RunsCode(k), protocol=2),
        "tampered with",
    ),
    "code in the weights": (
        lambda m, k: _save({**_payload(m), "state_dict": {"w": RunsCode(k)}}),
        "tampered with",
    ),
    "empty file": (lambda m, k: b"", "not a model file"),
    "text": (lambda m, k: b"hello\n", "not a model file"),
    "random bytes": (lambda m, k: bytes(range(256)) * 16, "not a model file"),
    "truncated": (lambda m, k: m.read_bytes()[: len(m.read_bytes()) // 2], "truncated"),
    "a zip that is not torch": (lambda m, k: _zip_not_torch(), "not a model file"),
    "a bare tensor": (lambda m, k: _save(torch.zeros(3)), "not a wsdal-wsi model"),
    "a foreign state dict": (
        lambda m, k: _save(_payload(m)["state_dict"]),
        "not a wsdal-wsi model",
    ),
    "a future format": (
        lambda m, k: _save({**_payload(m), "format_version": 99}),
        "newer than this wsdal-wsi reads",
    ),
    "spec not JSON": (
        lambda m, k: _save({**_payload(m), "spec": "{not json"}),
        "model metadata is missing or malformed",
    ),
    "a patch of a billion pixels": (
        lambda m, k: _edit_spec(m, patch_size_px=10**9),
        "patch_size_px must be in",
    ),
    "a NaN threshold": (lambda m, k: _edit_spec(m, threshold=float("nan")), "threshold"),
    "an unknown architecture": (
        lambda m, k: _edit_spec(m, arch="os.system"),
        "unknown architecture",
    ),
    "a million channels": (
        lambda m, k: _edit_spec(m, arch_kwargs={"width": 10**6, "proj_dim": 8}),
        "width must be in",
    ),
    "inputs resized to a billion pixels": (
        lambda m, k: _edit_spec(m, arch_kwargs={"width": 4, "proj_dim": 8, "input_px": 10**9}),
        "input_px must be in",
    ),
    "weights of another shape": (
        lambda m, k: _edit_spec(m, arch_kwargs={"width": 8, "proj_dim": 8}),
        "weights do not fit",
    ),
    "weights that are not tensors": (
        lambda m, k: _save({**_payload(m), "state_dict": {"w": [1, 2, 3]}}),
        "weights are missing or malformed",
    ),
}


@pytest.fixture(scope="module")
def source(train_data) -> Path:
    return sorted(train_data.glob("*.tiff"))[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_hostile_model_file_is_refused_in_one_line(case, tiny_model, source, tmp_path):
    make, says = CASES[case]
    marker = tmp_path / "PWNED"
    model = tmp_path / "model.pt"
    model.write_bytes(make(tiny_model, marker))
    out = tmp_path / "OUT"
    result = runner.invoke(
        app, ["predict", str(source), "--model", str(model), "--out", str(out), "--device", "cpu"]
    )
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    (line,) = [ln for ln in result.stderr.splitlines() if "Error" in ln]
    assert line.startswith(f"Error: {model}: ") and says in line, line
    assert "weights_only" not in result.output
    assert not marker.exists() and not out.exists()


@pytest.mark.parametrize("target", ["a folder named model.pt", "a device"])
def test_a_model_path_that_is_not_a_file(target, source, tmp_path):
    model = tmp_path / "model.pt"
    if target == "a device":
        model = Path("/dev/zero")  # reading it would never end
    else:
        model.mkdir()
    result = runner.invoke(
        app, ["predict", str(source), "--model", str(model), "--out", str(tmp_path / "OUT")]
    )
    assert result.exit_code == 2 and f"Error: {model}: not a file" in result.stderr


def test_hostile_pretrained_weights_are_refused_before_any_work(train_data, tmp_path):
    marker = tmp_path / "PWNED"
    weights = tmp_path / "resnet18.pth"
    weights.write_bytes(_save({"conv1.weight": RunsCode(marker)}))
    run = tmp_path / "run"
    result = runner.invoke(
        app, ["train", str(train_data), "--out", str(run), "--pretrained", str(weights)]
    )
    assert result.exit_code == 2 and "tampered with" in result.stderr
    assert "weights_only" not in result.output and not marker.exists() and not run.exists()
