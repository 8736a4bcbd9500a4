"""Shipped pretrained models load by name wherever a file is taken; unknown names list the
shipped ones; a shipped supernet's outputs equal those of the weights it was made from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from ofabench.cli import main
from ofabench.errors import ConfigError
from ofabench.predictor.mlp import AccuracyPredictor
from ofabench.pretrained import looks_like_name, pretrained_dir, resolve, ship, shipped, verify
from ofabench.space import get_space
from ofabench.supernet import OFAMobileNetV3
from ofabench.supernet.checkpoint import load_supernet, save_supernet
from ofabench.training.evaluate import recalibrate_bn

from .conftest import randomize_bn_and_transforms

SPACE = "small32_w0.5"


@pytest.fixture
def shipped_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of shipped models holding ``tiny_ps`` (random weights, non-degenerate BN)."""
    space = get_space(SPACE)
    torch.manual_seed(0)
    net = OFAMobileNetV3(space)
    randomize_bn_and_transforms(net)
    src = tmp_path / "src"
    src.mkdir()
    save_supernet(net, src / "expand_2.pt")
    AccuracyPredictor(space, hidden_size=8).save(src / "predictor.pt")
    (src / "accuracy.csv").write_text("arch,val_acc\n")
    config = {"space": SPACE, "data": {"name": "digits"}, "stages": [{"name": "full", "epochs": 1, "lr": 0.1}]}
    (src / "config.yaml").write_text(yaml.safe_dump(config))
    root = tmp_path / "pretrained"
    files = {"supernet": src / "expand_2.pt", "predictor": src / "predictor.pt",
             "accuracy": src / "accuracy.csv", "config": src / "config.yaml"}  # fmt: skip
    ship("tiny_ps", files, SPACE, "digits", {"largest_test": 0.5}, {"study": "test"}, root)
    monkeypatch.setenv("OFABENCH_PRETRAINED_DIR", str(root))
    return root


def test_names_resolve_to_the_shipped_files(shipped_dir: Path) -> None:
    assert set(shipped()) == {"tiny_ps"}
    manifest = shipped()["tiny_ps"]
    assert manifest["space"] == SPACE and manifest["made_by"]["study"] == "test"
    assert resolve("tiny_ps", "supernet") == shipped_dir / "tiny_ps" / "supernet.pt"
    assert resolve("tiny_ps", "predictor").name == "predictor.pt"
    assert resolve("some/file.pt", "supernet") == Path("some/file.pt")  # paths pass through
    assert not looks_like_name("ofa:acc_predictor.pth") and looks_like_name("tiny_ps")
    with pytest.raises(ConfigError, match=r"'nope' is neither a file nor a shipped model; shipped models: tiny_ps"):
        resolve("nope", "supernet")


def test_a_shipped_supernet_computes_what_its_weights_compute(shipped_dir: Path, tmp_path: Path) -> None:
    space = get_space(SPACE)
    shipped_net = load_supernet(resolve("tiny_ps", "supernet"), space).eval()
    source = load_supernet(tmp_path / "src" / "expand_2.pt", space).eval()
    x = torch.randn(4, 1, 28, 28)
    arch = space.max_arch().__class__(**{**space.max_arch().__dict__, "r": 28})
    # BN statistics of input-dependent data on both (random statistics make the logits
    # input-independent, and then no equality check could fail)
    recal = torch.rand(64, 1, 28, 28) * torch.linspace(0, 2, 28)
    recalibrate_bn(shipped_net, arch, recal, 64)
    recalibrate_bn(source, arch, recal, 64)
    with torch.no_grad():
        a, b = shipped_net(x), source(x)
    assert torch.equal(a, b)
    assert (a[0] - a[1]).abs().max() > 1e-3  # outputs depend on the input
    with torch.no_grad():  # and one changed weight changes them: the check can fail
        next(p for n, p in source.named_parameters() if "blocks.3" in n and p.ndim == 4)[0] += 0.5
        assert not torch.allclose(source(x), a, atol=1e-5)


def test_verify_checks_hashes_and_the_output_fingerprint(
    shipped_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    """A shipped model's manifest holds its files' sha256 and the logits of its largest and
    smallest subnet for a fixed input; verify() (and ``ofabench pretrained --verify``) finds any
    change to either."""
    assert verify("tiny_ps") == []
    assert main(["pretrained", "--verify"]) == 0 and "verified" in capsys.readouterr().out
    manifest = shipped()["tiny_ps"]
    assert len(manifest["fingerprint"]["largest"]) == 4 and set(manifest["sha256"]) >= {"supernet"}
    (shipped_dir / "tiny_ps" / "accuracy.csv").write_text("arch,val_acc\nx,0.5\n")
    assert verify("tiny_ps") == ["accuracy: sha256 differs from the manifest's"]
    space = get_space(SPACE)
    path = shipped_dir / "tiny_ps" / "supernet.pt"
    net = load_supernet(path, space)
    with torch.no_grad():  # one row of the classifier: every subnet runs it
        net.classifier.weight[0] += 0.5
    save_supernet(net, path)
    problems = verify("tiny_ps")
    assert "supernet: sha256 differs from the manifest's" in problems
    assert any(p.startswith("largest subnet's logits differ") for p in problems)
    assert any(p.startswith("smallest subnet's logits differ") for p in problems)
    assert main(["pretrained", "--verify"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tiny_ps: supernet: sha256 differs" in err
    with pytest.raises(ConfigError, match="'nope' is not a shipped model; shipped models: tiny_ps"):
        verify("nope")


def test_the_models_shipped_in_the_package_are_intact(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every model in the package's pretrained/ folder loads by name and computes the logits
    it was shipped with; the README's demo needs fashion_mnist_ps among them."""
    monkeypatch.delenv("OFABENCH_PRETRAINED_DIR", raising=False)
    models = shipped()
    assert "fashion_mnist_ps" in models, f"no fashion_mnist_ps in {pretrained_dir()}"
    for name in models:
        assert verify(name) == [], name


def test_cli_takes_a_shipped_name_and_lists_them_for_an_unknown_one(
    shipped_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("sklearn")
    argv = ["eval", "--arch", "min", "--recal-images", "32", "--json"]
    assert main([*argv, "--checkpoint", "tiny_ps"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["checkpoint"].endswith("tiny_ps/supernet.pt") and record["dataset"] == "digits"
    assert main([*argv, "--checkpoint", "fashion_mnist_nope"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "shipped models: tiny_ps" in err
