"""Search on the small OFA-ResNet50 space: the genome carries the stem-depth and width genes,
and ``ofabench search`` with a tiny latency table and predictor returns a subnet within the
budget whose latency is exactly ``LatencyModel.predict`` of it (the family's costs are not
additive, so the search uses the model's per-arch prediction)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ofabench.cli import main
from ofabench.latency.counting import count_macs, layer_macs
from ofabench.latency.model import LatencyModel
from ofabench.latency.table import LatencyEntry, LatencyTable, resolution_ops
from ofabench.search import Genome
from ofabench.space import ArchConfig, LayerGeom, get_space

from .test_resnet_predictor import _accuracy_csv

SMALL = "resnet_small32_w0.25"


def test_genome_carries_and_mutates_the_extra_genes() -> None:
    space = get_space(SMALL)
    genome = Genome(space)
    rng = np.random.default_rng(0)
    rows = genome.random(200, rng)
    batch = genome.to_batch(rows)
    assert batch.extra is not None and batch.extra.shape == (200, 7)
    for arch in batch.to_archs():
        space.validate(arch)
    assert set(batch.extra[:, 0]) == {0, 1} and set(batch.extra[:, 1:].ravel()) == {0, 1, 2}
    np.testing.assert_array_equal(Genome.from_batch(batch), rows)
    mutated = genome.to_batch(genome.mutate(rows, rng, 0.3, 0.5))
    assert (mutated.extra != batch.extra).any(axis=1).mean() > 0.5
    np.testing.assert_array_equal(mutated.ks, batch.ks)  # ResNet kernels are all 3


def _table(space, path: Path) -> Path:
    """Latency in proportion to MACs, plus a per-op cost (a tiny, deterministic table)."""
    table = LatencyTable.for_space(space, device="fake", backend="null")
    for r in space.resolutions:
        for op in resolution_ops(space, r).all_ops():
            geom = LayerGeom(
                op.kind,
                op.in_hw,
                op.in_c,
                op.out_c,
                mid=op.mid,
                kernel=3,
                stride=op.stride or (2 if op.out_hw < op.in_hw else 1),
                residual=op.residual,
            )
            table.add(op, LatencyEntry(0.01 + layer_macs(geom) * 1e-6), resolution=r)
    return table.save(path)


def test_search_respects_the_latency_budget_and_equals_predict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = get_space(SMALL)
    table_path = _table(space, tmp_path / "table.json")
    model = LatencyModel(LatencyTable.load(table_path), space)
    data = _accuracy_csv(tmp_path / "acc.csv", space)
    predictor = tmp_path / "p.pt"
    fit = ["fit-predictor", "--space", SMALL, "--data", str(data), "--out", str(predictor)]
    assert main([*fit, "--epochs", "20", "--hidden", "16", "--json"]) == 0
    sampled = model.predict_batch([space.sample(seed) for seed in range(200)])
    budget = round(float(np.percentile(sampled, 10)), 4)  # most subnets are over it
    argv = ["search", "--space", SMALL, "--predictor", str(predictor)]
    argv += ["--latency-table", str(table_path), "--population", "16", "--generations", "4"]
    capsys.readouterr()
    assert main([*argv, "--latency", f"{budget:.4f}ms", "--json"]) == 0
    best = json.loads(capsys.readouterr().out)["best"]
    arch = ArchConfig.from_dict(best["arch"])
    space.validate(arch)
    assert best["latency_ms"] <= budget
    assert best["latency_ms"] == pytest.approx(model.predict(arch), rel=1e-12)  # summation order
    assert best["mmacs"] == pytest.approx(count_macs(space, arch) / 1e6, rel=1e-12)
    low = model.predict(space.min_arch())
    assert main([*argv, "--latency", f"{low * 0.5:.4f}ms"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "smallest value reachable" in err[0]
