"""Accuracy predictor: encoding layout, OFA import checked against the `ofa` package, fitting,
rank metrics and the predictor file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ofabench.errors import CheckpointError, ConfigError, InvalidArchError
from ofabench.predictor import AccuracyPredictor, ArchEncoder, load_ofa_predictor
from ofabench.predictor.mlp import _kendall_tau_numpy, _spearman_numpy
from ofabench.space import ArchBatch, ArchConfig, get_space

pytestmark = pytest.mark.usefixtures("one_thread")

W10 = get_space("ofa_mbv3_w1.0")
W12 = get_space("ofa_mbv3_w1.2")
SMALL = get_space("small32")


@pytest.fixture(scope="module")
def ofa_predictor_file(ofa_reference: Path) -> Path:
    path = ofa_reference / "acc_predictor.pth"
    if not path.is_file():
        pytest.skip(f"OFA accuracy predictor not found at {path}")
    return path


def naive_encoding(arch: ArchConfig, encoder: ArchEncoder) -> np.ndarray:
    """The layout written out slot by slot, to check the vectorised encoder against."""
    kernel, expand = [], []
    for slot in range(encoder.n_blocks):
        stage, j = divmod(slot, encoder.max_depth)
        on = j < arch.d[stage]
        kernel += [float(on and k == arch.ks[slot]) for k in encoder.kernel_choices]
        expand += [float(on and e == arch.e[slot]) for e in encoder.expand_choices]
    if encoder.resolution_encoding == "ofa":
        res = [float((arch.r - 112) // 16 == i) for i in range(8)]
    else:
        res = [float(r == arch.r) for r in encoder.resolution_slots]
    return np.array(kernel + expand + res, dtype=np.float32)


# -- encoding ----------------------------------------------------------------------------------
def test_encoder_sizes() -> None:
    assert ArchEncoder(W10).n_features == 20 * 3 + 20 * 3 + 25
    assert ArchEncoder(W10, "ofa").n_features == 128
    assert ArchEncoder(SMALL).n_features == 20 * 6 + 3


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), space=st.sampled_from([W10, SMALL]), ofa=st.booleans())
def test_encoding_is_one_hot_per_active_slot(seed: int, space, ofa: bool) -> None:
    if ofa and space is SMALL:
        space = W10
    encoder = ArchEncoder(space, "ofa" if ofa else "onehot")
    archs = [space.sample(seed + i) for i in range(5)]
    features = encoder.encode(archs)
    assert features.dtype == np.float32 and features.shape == (5, encoder.n_features)
    assert set(np.unique(features)) <= {0.0, 1.0}
    nk, ne, nb = len(space.kernel_choices), len(space.expand_choices), space.n_blocks
    for arch, row in zip(archs, features):
        kernel = row[: nb * nk].reshape(nb, nk).sum(1)
        expand = row[nb * nk : nb * (nk + ne)].reshape(nb, ne).sum(1)
        active = ArchBatch.from_archs([arch]).active_mask(space)[0]
        np.testing.assert_array_equal(kernel, active)
        np.testing.assert_array_equal(expand, active)
        assert row[nb * (nk + ne) :].sum() == 1
        np.testing.assert_array_equal(row, naive_encoding(arch, encoder))


def test_single_arch_and_batch_agree() -> None:
    encoder = ArchEncoder(W10)
    archs = [W10.sample(i) for i in range(8)]
    batch = encoder.encode_batch(ArchBatch.from_archs(archs))
    np.testing.assert_array_equal(batch[3], encoder.encode(archs[3]))


def test_ofa_resolution_bins() -> None:
    encoder = ArchEncoder(W10, "ofa")
    for r, slot in ((128, 1), (140, 1), (144, 2), (220, 6), (224, 7)):
        row = encoder.encode(W10.uniform(3, 3, 2, r))
        assert int(np.argmax(row[120:])) == slot
    with pytest.raises(ConfigError, match="OFA's resolution encoding"):
        ArchEncoder(SMALL, "ofa")
    with pytest.raises(ConfigError, match="allowed"):
        ArchEncoder(W10, "bins")


def test_unknown_values_are_refused() -> None:
    encoder = ArchEncoder(W10)
    bad = ArchBatch.from_archs([W10.min_arch()])
    with pytest.raises(InvalidArchError, match="'ks' holds 4"):
        encoder.encode_batch(ArchBatch(bad.ks + 1, bad.e, bad.d, bad.r))
    with pytest.raises(InvalidArchError, match="'r' holds 130"):
        encoder.encode_batch(ArchBatch(bad.ks, bad.e, bad.d, bad.r + 2))
    with pytest.raises(InvalidArchError, match="shape"):
        encoder.encode_batch(ArchBatch(bad.ks[:, :4], bad.e, bad.d, bad.r))


def test_encoder_describes_itself() -> None:
    for encoder in (ArchEncoder(W10), ArchEncoder(W10, "ofa"), ArchEncoder(SMALL)):
        data = json.loads(json.dumps(encoder.to_dict()))
        again = ArchEncoder.from_dict(data)
        assert again == encoder
        archs = (
            [W10.sample(1)] if encoder.n_blocks == 20 and 224 in encoder.resolution_slots else []
        )
        for arch in archs:
            np.testing.assert_array_equal(again.encode(arch), encoder.encode(arch))


# -- OFA's published predictor -----------------------------------------------------------------
def _ofa_package_predictor(path: Path):
    """OFA's own AccuracyPredictor + MobileNetArchEncoder holding the tutorial's weights.

    The package's encoder puts the resolution one-hot first and keeps the last bias apart
    (``base_acc``); its resolution slots are exact sizes, so give it 112, 128, ..., 224.
    """
    module = pytest.importorskip(
        "ofa.nas.accuracy_predictor", reason="the `ofa` package is not installed"
    )
    encoder = module.MobileNetArchEncoder(image_size_list=list(range(112, 225, 16)))
    reference = module.AccuracyPredictor(encoder, device="cpu")
    tutorial = torch.load(path, map_location="cpu")
    first = tutorial["0.weight"]
    reference.load_state_dict(
        {
            "layers.0.0.weight": torch.cat([first[:, 120:], first[:, :120]], dim=1),
            "layers.0.0.bias": tutorial["0.bias"],
            "layers.1.0.weight": tutorial["2.weight"],
            "layers.1.0.bias": tutorial["2.bias"],
            "layers.2.0.weight": tutorial["4.weight"],
            "layers.2.0.bias": tutorial["4.bias"],
            "layers.3.weight": tutorial["6.weight"],
            "base_acc": tutorial["6.bias"],
        }
    )
    return encoder, reference.eval()


def _ofa_dict(arch: ArchConfig) -> dict:
    return {
        "ks": list(arch.ks),
        "e": list(arch.e),
        "d": list(arch.d),
        "image_size": 112 + 16 * ((arch.r - 112) // 16),
    }


def test_ofa_predictor_matches_the_ofa_package(ofa_predictor_file: Path) -> None:
    encoder, reference = _ofa_package_predictor(ofa_predictor_file)
    ours = load_ofa_predictor(ofa_predictor_file, W12)
    rng = np.random.default_rng(0)
    archs = [W12.sample(rng) for _ in range(20)]
    with torch.no_grad():
        expected = reference.predict_acc([_ofa_dict(a) for a in archs]).numpy()
    np.testing.assert_allclose(ours.predict(archs), expected, atol=1e-5)
    theirs = np.array([encoder.arch2feature(_ofa_dict(a)) for a in archs])
    np.testing.assert_array_equal(ours.encoder.encode(archs), np.roll(theirs, -8, axis=1))


def test_ofa_predictor_sanity(ofa_predictor_file: Path) -> None:
    predictor = load_ofa_predictor(ofa_predictor_file)
    acc = predictor.predict([W12.min_arch(), W12.max_arch()])
    assert acc.dtype == np.float32 and 0.6 < acc[0] < acc[1] < 0.85
    assert predictor.provenance["source"] == "ofa_acc_predictor"
    assert predictor.trained_space.name == "ofa_mbv3_w1.2" and predictor.space_mismatch is None
    restricted = W12.restrict(kernel_choices=[3, 5], resolutions=[160, 192, 224])
    sub = load_ofa_predictor(ofa_predictor_file, restricted)
    arch = restricted.uniform(5, 4, 3, 192)
    np.testing.assert_allclose(sub.predict([arch]), predictor.predict([arch]))
    with pytest.raises(ConfigError, match="trained on space 'ofa_mbv3_w1.2'"):
        load_ofa_predictor(ofa_predictor_file, W10)
    with pytest.raises(ConfigError, match="do not fit OFA.s resolution encoding"):
        load_ofa_predictor(ofa_predictor_file, get_space("small32"), allow_space_mismatch=True)
    with pytest.raises(CheckpointError, match="not an ofabench accuracy predictor"):
        AccuracyPredictor.load(ofa_predictor_file)


# -- fitting -----------------------------------------------------------------------------------
def synthetic_task(space, n: int, seed: int) -> tuple[list[ArchConfig], np.ndarray]:
    """Accuracy = a known linear function of the encoding (about 0.72 +- 0.023)."""
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(n)]
    features = ArchEncoder(space).encode(archs)
    weights = np.random.default_rng(123).normal(0, 0.006, features.shape[1])
    return archs, (0.70 + features @ weights).astype(np.float32)


def test_fit_learns_a_linear_target() -> None:
    archs, accs = synthetic_task(W10, 1000, seed=0)  # accuracies spread by about 2.3 points
    predictor = AccuracyPredictor(W10, hidden_size=128)
    report = predictor.fit(archs, accs, epochs=40, lr=2e-3, seed=0, val_fraction=0.25)
    assert report.n_train == 750 and report.n_val == 250 and report.evaluated_on == "val"
    assert report.rmse_pct < 0.6, report
    assert report.kendall_tau > 0.85 and report.spearman_rho > 0.97, report
    unseen, truth = synthetic_task(W10, 200, seed=7)
    assert np.sqrt(np.mean((predictor.predict(unseen) - truth) ** 2)) * 100 < 0.6


def test_output_bias_starts_at_the_mean_target() -> None:
    archs, accs = synthetic_task(SMALL, 50, seed=1)
    predictor = AccuracyPredictor(SMALL, hidden_size=16)
    predictor.fit(archs, accs, epochs=0, val_fraction=0.0)
    assert predictor.model[-1].bias.item() == pytest.approx(float(accs.mean()), abs=1e-6)


def test_fit_refuses_percentages_and_mismatched_lengths() -> None:
    archs, accs = synthetic_task(SMALL, 20, seed=2)
    predictor = AccuracyPredictor(SMALL, hidden_size=8)
    with pytest.raises(ConfigError, match="fractions"):
        predictor.fit(archs, accs * 100)
    with pytest.raises(ConfigError, match="one per arch"):
        predictor.fit(archs, accs[:5])


def test_numpy_rank_metrics_match_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    x = rng.integers(0, 6, 40).astype(float)  # with ties
    y = x + rng.normal(0, 2, 40)
    assert _kendall_tau_numpy(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)
    assert _spearman_numpy(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)


# -- files -------------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path: Path) -> None:
    archs, accs = synthetic_task(SMALL, 64, seed=4)
    predictor = AccuracyPredictor(SMALL, ArchEncoder(SMALL), hidden_size=32)
    predictor.fit(archs, accs, epochs=3, val_fraction=0.25)
    path = tmp_path / "sub" / "predictor.pt"
    predictor.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["predictor.pt"]  # no temp file left
    again = AccuracyPredictor.load(path)
    np.testing.assert_array_equal(again.predict(archs), predictor.predict(archs))
    assert again.encoder == predictor.encoder and again.space == SMALL
    assert again.provenance["source"] == "fit" and "rmse_pct" in again.provenance["fit"]
    assert AccuracyPredictor.load(path, SMALL).hidden_size == 32
    assert again.trained_space == SMALL and again.space_mismatch is None
    restricted = SMALL.restrict(kernel_choices=[3, 5], resolutions=[28])
    assert AccuracyPredictor.load(path, restricted).trained_space == SMALL  # a restriction is fine
    with pytest.raises(ConfigError, match="trained on space 'small32' but is used for space"):
        AccuracyPredictor.load(path, W10)
    with pytest.raises(CheckpointError, match="does not exist"):
        AccuracyPredictor.load(tmp_path / "missing.pt")


def test_old_predictor_files_say_they_do_not_record_the_trained_space(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "old.pt"
    AccuracyPredictor(SMALL, hidden_size=8).save(path)
    payload = torch.load(path, weights_only=True)
    payload.pop("trained_space")
    payload["schema_version"] = 1  # as ofabench wrote them before trained_space
    torch.save(payload, path)
    with caplog.at_level("WARNING", logger="ofabench"):
        old = AccuracyPredictor.load(path, SMALL)
    assert old.trained_space == SMALL
    assert "did not record the space a predictor was trained on" in caplog.text
    payload.pop("space")
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="does not record the space it was trained on"):
        AccuracyPredictor.load(path, SMALL)
