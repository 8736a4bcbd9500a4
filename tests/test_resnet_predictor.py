"""OFA-ResNet50 accuracy-predictor encoding: column for column OFA's own ``ResNetArchEncoder``,
and ``fit-predictor`` on a ResNet accuracy dataset writes a predictor that reads back."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ofabench.cli import main
from ofabench.errors import ConfigError, InvalidArchError
from ofabench.families import get_family
from ofabench.predictor.mlp import AccuracyPredictor, ArchEncoder, encoder_from_dict, make_encoder
from ofabench.predictor.resnet_encoder import ResNetArchEncoder
from ofabench.space import ArchBatch, get_space

SMALL = "resnet_small32_w0.25"


def test_encoding_equals_ofas_resnet_arch_encoder() -> None:
    ofa_encoder = pytest.importorskip("ofa.nas.accuracy_predictor.arch_encoder")
    space = get_space("ofa_resnet50").restrict(resolutions=(160, 192, 224))
    encoder = make_encoder(space)
    assert isinstance(encoder, ResNetArchEncoder)
    reference = ofa_encoder.ResNetArchEncoder(image_size_list=list(space.resolutions))
    assert encoder.n_features == reference.n_dim == 3 + 2 + 18 + 54
    archs = [space.sample(seed) for seed in range(40)] + [space.min_arch(), space.max_arch()]
    ours = encoder.encode(archs)
    for arch, row in zip(archs, ours):
        ofa = get_family("resnet").to_ofa_dict(space, arch)
        ofa["image_size"] = arch.r
        np.testing.assert_array_equal(row, reference.arch2feature(ofa))


def test_encoder_round_trips_and_refuses_bad_archs() -> None:
    space = get_space(SMALL)
    encoder = make_encoder(space)
    assert encoder_from_dict(encoder.to_dict()) == encoder
    arch = space.sample(1)
    batch = ArchBatch.from_archs([arch])
    with pytest.raises(InvalidArchError, match="width indices 0..2"):
        encoder.encode_batch(ArchBatch(batch.ks, batch.e, batch.d, batch.r, batch.extra + 3))
    with pytest.raises(InvalidArchError, match="needs extra genes"):
        encoder.encode_batch(ArchBatch(batch.ks, batch.e, batch.d, batch.r))
    with pytest.raises(InvalidArchError, match="'r' holds 30"):
        encoder.encode_batch(ArchBatch(batch.ks, batch.e, batch.d, batch.r * 0 + 30, batch.extra))
    with pytest.raises(ConfigError, match="use make_encoder"):
        ArchEncoder(space)
    with pytest.raises(ConfigError, match="allowed: \\['onehot'\\]"):
        make_encoder(space, "ofa")


def _accuracy_csv(path: Path, space, n: int = 64) -> Path:
    rng = np.random.default_rng(0)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arch", "accuracy"])
        for seed in range(n):
            arch = space.sample(seed)
            acc = 0.5 + 0.05 * sum(arch.extra[1:]) / 6 + 0.01 * rng.random()
            writer.writerow([json.dumps(arch.to_dict()), f"{acc:.4f}"])
    return path


def test_fit_predictor_on_a_resnet_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = get_space(SMALL)
    data = _accuracy_csv(tmp_path / "acc.csv", space)
    out = tmp_path / "p.pt"
    argv = ["fit-predictor", "--space", SMALL, "--data", str(data), "--out", str(out)]
    assert main([*argv, "--epochs", "20", "--hidden", "16", "--json"]) == 0
    capsys.readouterr()
    predictor = AccuracyPredictor.load(out, space)
    assert isinstance(predictor.encoder, ResNetArchEncoder)
    pred = predictor.predict([space.min_arch(), space.max_arch()])
    assert pred.shape == (2,) and np.isfinite(pred).all()
