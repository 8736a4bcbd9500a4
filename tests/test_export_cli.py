"""ONNX export (checked in ONNX Runtime) and the CLI's behaviour on good and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from ofabench.cli import main
from ofabench.errors import ExportError
from ofabench.export import export_onnx
from ofabench.space import get_space
from ofabench.supernet import OFAMobileNetV3
from ofabench.supernet.checkpoint import save_supernet

from .conftest import randomize_bn_and_transforms

ort = pytest.importorskip(
    "onnxruntime", reason="onnxruntime is not installed (pip install 'ofabench[onnx]')"
)
onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'ofabench[onnx]')")

SMALL = get_space("small32_w0.5")


@pytest.mark.parametrize("seed", range(3))
def test_onnx_export_matches_pytorch(tmp_path, seed: int) -> None:
    net = OFAMobileNetV3(SMALL)
    randomize_bn_and_transforms(net)
    arch = net.sample_active_subnet(seed)
    subnet = net.get_active_subnet().eval()
    out = tmp_path / "sub.onnx"
    report = export_onnx(subnet, (2, 1, arch.r, arch.r), out, metadata={"arch": arch.to_dict()})
    assert report.max_abs_diff is not None and report.max_abs_diff <= report.tolerance
    # independent check with a fresh input
    x = np.random.default_rng(seed).standard_normal((2, 1, arch.r, arch.r)).astype(np.float32)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = subnet(torch.from_numpy(x)).numpy()
    assert np.abs(session.run(None, {"input": x})[0] - want).max() <= 1e-4
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["ofabench.provenance"])["arch"] == arch.to_dict()


def test_failed_export_keeps_existing_file(tmp_path) -> None:
    class Unexportable(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(x.numpy() * 2)  # leaves the traced graph

    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous")
    with pytest.raises(ExportError):
        export_onnx(Unexportable(), (1, 3, 8, 8), out)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_cli_export_with_checkpoint_and_ofa_dict(tmp_path, capsys) -> None:
    ckpt = tmp_path / "supernet.pt"
    net = OFAMobileNetV3(SMALL)
    randomize_bn_and_transforms(net)
    save_supernet(net, ckpt)
    arch = SMALL.sample(5)
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(json.dumps(arch.to_ofa_dict()))  # OFA's form: "r": [r]
    out = tmp_path / "sub.onnx"
    code = main(["export", "--arch", str(arch_file), "--space", "small32_w0.5", "--checkpoint", str(ckpt),
                 "--format", "onnx", "--out", str(out), "--json"])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["arch"] == arch.to_dict() and report["max_abs_diff"] <= report["tolerance"]
    net.eval().set_active_subnet(arch)
    x = np.ones((1, 1, arch.r, arch.r), np.float32)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        assert (
            np.abs(session.run(None, {"input": x})[0] - net(torch.from_numpy(x)).numpy()).max()
            <= 1e-4
        )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["count", "--arch", '{"ks":[4],"e":[3],"d":[2],"r":224}'], "'ks' has 1 entries"),
        (["count", "--arch", "no_such_file.json"], "does not exist"),
        (["count", "--arch", "max", "--space", "resnet"], "unknown space 'resnet'"),
        (["count", "--arch", "{not json"], "not valid JSON"),
        (
            ["export", "--arch", "max", "--out", "x.onnx", "--checkpoint", "missing.pt"],
            "does not exist",
        ),
        (["sample", "--n", "0"], "--n must be at least 1"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_1(
    argv: list[str], message: str, capsys, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ofabench: error:") and message in err[-1]
    assert not any("Traceback" in line for line in err)


def test_cli_kernel_4_reports_field_value_allowed(tmp_path) -> None:
    arch = get_space().max_arch().to_dict()
    arch["ks"][2] = 4
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(arch))
    done = subprocess.run(
        [sys.executable, "-m", "ofabench", "count", "--arch", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "ofabench: error: arch field 'ks'[2] = 4 is not allowed in space 'ofa_mbv3_w1.0'; allowed: [3, 5, 7]"
    )


def test_cli_count_and_sample_json(capsys) -> None:
    assert (
        main(["count", "--arch", json.dumps(get_space().uniform(3, 3, 4, 224).to_dict()), "--json"])
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["macs"] == 226_193_808
    assert main(["sample", "--n", "3", "--seed", "1", "--space", "small32"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(
        get_space("small32").contains(get_space("small32").validate(json.loads(x))) for x in lines
    )
    assert main(["spaces", "--json"]) == 0
    names = [s["name"] for s in json.loads(capsys.readouterr().out)["spaces"]]
    assert "ofa_mbv3_w1.2" in names
