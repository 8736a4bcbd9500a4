"""The search side of the CLI (fit-predictor, search) and the library behind it: budgets,
exact additive constraints, the numpy predictor path, one-line errors with exit code 1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ofabench.cli import main
from ofabench.errors import ConfigError, InfeasibleConstraintError
from ofabench.latency import LatencyModel, LatencyTable
from ofabench.latency.counting import count_macs
from ofabench.predictor.mlp import AccuracyPredictor, ArchEncoder, load_ofa_predictor
from ofabench.search import evolve, latency_constraint, macs_constraint, macs_fn
from ofabench.search.additive import AdditiveCost
from ofabench.search.budgets import parse_budget, parse_budgets, sweep_spec
from ofabench.search.evolution import Genome
from ofabench.space import ArchBatch, get_space

W10 = get_space("ofa_mbv3_w1.0")
W12 = get_space("ofa_mbv3_w1.2")
SMALL = get_space("small32")


@pytest.fixture(scope="module")
def ofa_files(ofa_reference: Path) -> dict[str, str]:
    predictor, lut = ofa_reference / "acc_predictor.pth", ofa_reference / "note10_lut"
    if not predictor.is_file() or not lut.is_dir():
        pytest.skip("OFA predictor or Note10 LUT missing")
    return {"predictor": f"ofa:{predictor}", "lut": str(lut)}


@pytest.fixture(scope="module")
def note10(ofa_files: dict[str, str]) -> LatencyModel:
    table = LatencyTable.from_ofa_yaml(ofa_files["lut"], space=W12, device="note10")
    return LatencyModel(table, W12)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("ofabench: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- budgets -----------------------------------------------------------------------------------
def test_budget_lists_ranges_and_units() -> None:
    expected = [15.0 + 5 * i for i in range(10)]
    assert parse_budgets("15,20,...,60ms", "latency") == expected
    assert parse_budgets("15:60:5ms", "latency") == expected
    assert parse_budgets("200M,0.3G,400M", "macs") == [200.0, 300.0, 400.0]
    assert parse_budgets("200,300M", "macs") == [200.0, 300.0]
    with pytest.raises(ConfigError, match="mix units"):
        parse_budgets("200M,0.3G,400", "macs")
    assert parse_budget("0.5s", "latency") == 500.0 and parse_budget("5M", "params") == 5.0
    for bad, match in (("25", "no unit"), ("-5ms", "positive"), ("5xs", "unknown unit")):
        with pytest.raises(ConfigError, match=match):
            parse_budgets(bad, "latency")
    assert sweep_spec("15,20ms", None, "6M") == ("latency_ms", [15.0, 20.0], {"mparams": 6.0})
    with pytest.raises(ConfigError, match="one budget list"):
        sweep_spec("15,20ms", "200M,300M")


# -- exact additive constraints ----------------------------------------------------------------
def test_probed_latency_table_is_exact_and_its_minimum_is_reachable(note10: LatencyModel) -> None:
    space = W12.restrict(resolutions=note10.resolutions)
    table = AdditiveCost.probe(space, note10.predict_batch)
    assert table is not None
    genome, rng = Genome(space), np.random.default_rng(5)
    genes = genome.random_index(300, rng)
    truth = note10.predict_batch(genome.to_batch(genome.values(genes)))
    np.testing.assert_allclose(table.of_indices(genes), truth, rtol=1e-9)
    value, row = table.minimum()
    best = genome.to_batch(genome.values(row[None, :]))
    assert note10.predict_batch(best)[0] == pytest.approx(value)
    assert value <= truth.min()


def test_non_additive_costs_are_not_given_a_table() -> None:
    assert AdditiveCost.probe(SMALL, lambda b: (b.ks.sum(1) ** 2).astype(float)) is None


def test_macs_minimum_matches_the_smallest_arch() -> None:
    value, _ = macs_fn(W10).minimum()
    assert value == pytest.approx(count_macs(W10, W10.min_arch()) / 1e6)


def test_latency_search_meets_the_budget_in_covered_resolutions(note10: LatencyModel) -> None:
    space = W12.restrict(resolutions=note10.resolutions)
    score = lambda b: (b.ks * b.e).sum(1) + 0.01 * b.r  # noqa: E731
    result = evolve(space, score, [latency_constraint(note10, 20.0)], population=30, generations=20)
    assert note10.predict(result.best) <= 20.0 and result.best.r in note10.resolutions
    with pytest.raises(InfeasibleConstraintError, match="smallest value reachable is 9.89"):
        evolve(space, score, [latency_constraint(note10, 5.0)], population=10, generations=2)


# -- the numpy predictor -----------------------------------------------------------------------
def test_numpy_prediction_equals_torch_and_is_refreshed_after_fit() -> None:
    predictor = AccuracyPredictor(SMALL, hidden_size=32, seed=3)
    rng = np.random.default_rng(0)
    archs = [SMALL.sample(rng) for _ in range(50)]
    features = torch.from_numpy(predictor.encoder.encode(archs))

    def torch_out() -> np.ndarray:
        with torch.no_grad():
            return predictor.model(features)[:, 0].numpy()

    np.testing.assert_allclose(predictor.predict(archs), torch_out(), rtol=1e-5, atol=1e-6)
    predictor.fit(archs, np.linspace(0.5, 0.9, 50), epochs=2, val_fraction=0.0)
    np.testing.assert_allclose(predictor.predict(archs), torch_out(), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        predictor.model[-1].bias.add_(0.1)
    predictor.refresh()
    np.testing.assert_allclose(predictor.predict(archs), torch_out(), rtol=1e-5, atol=1e-6)


def test_shared_scores_for_skipped_slots_do_not_change_the_search() -> None:
    encoder = ArchEncoder(W10)
    weights = np.random.default_rng(0).integers(0, 9, encoder.n_features).astype(np.float64)

    def score(batch: ArchBatch) -> np.ndarray:  # exact, and blind to skipped slots
        return encoder.encode_batch(batch).astype(np.float64) @ weights

    def flagged(batch: ArchBatch) -> np.ndarray:
        return score(batch)

    flagged.ignores_inactive_slots = True  # type: ignore[attr-defined]
    assert getattr(AccuracyPredictor(SMALL).predict, "ignores_inactive_slots", False)
    constraint = macs_constraint(W10, 250)
    run = {"population": 30, "generations": 15, "seed": 2, "unique_children": False}
    shared = evolve(W10, flagged, [constraint], **run)
    separate = evolve(W10, score, [constraint], **run)
    assert shared.best == separate.best and shared.history == separate.history
    assert shared.settings["n_predicted"] < separate.settings["n_predicted"]


def test_children_are_new_unless_asked_otherwise() -> None:
    constraint = macs_constraint(W10, 250)
    score = lambda b: (b.ks * b.e).sum(1).astype(float)  # noqa: E731
    runs = {
        unique: evolve(
            W10, score, [constraint], population=40, generations=30, seed=0, unique_children=unique
        )  # fmt: skip
        for unique in (True, False)
    }
    assert runs[True].settings["unique_children"] and not runs[False].settings["unique_children"]
    assert runs[True].settings["n_predicted"] > runs[False].settings["n_predicted"]


def test_fast_encoding_equals_the_checked_encoding() -> None:
    for space, kind in ((W10, "ofa"), (SMALL, "onehot")):
        encoder = ArchEncoder(space, kind)
        batch = ArchBatch.from_archs([space.sample(i) for i in range(40)])
        np.testing.assert_array_equal(encoder.encode_batch(batch), encoder._encode_checked(batch))


def test_ofa_predictor_is_the_w12_spaces_and_w10_only_when_allowed(
    ofa_files: dict[str, str],
) -> None:
    path = ofa_files["predictor"].removeprefix("ofa:")
    with pytest.raises(ConfigError, match="trained on space 'ofa_mbv3_w1.2'.*allow-space-mismatch"):
        load_ofa_predictor(path, W10)
    predictor = load_ofa_predictor(path, W12)
    arch = W12.uniform(5, 4, 3, 192)
    other = load_ofa_predictor(path, W10, allow_space_mismatch=True)
    assert predictor.space_mismatch is None and "'ofa_mbv3_w1.0'" in other.space_mismatch
    same = other.predict([W10.uniform(5, 4, 3, 192)])
    np.testing.assert_array_equal(predictor.predict([arch]), same)  # same encoding, same net


# -- ofabench search ---------------------------------------------------------------------------
def test_search_with_a_macs_budget_prints_json(
    capsys: pytest.CaptureFixture[str], ofa_files: dict[str, str], tmp_path: Path
) -> None:
    out_file = tmp_path / "result.json"
    code, out, err = run_cli(
        capsys,
        "search",
        "--space",
        "ofa_mbv3_w1.2",
        "--predictor",
        ofa_files["predictor"],
        "--macs",
        "300M",
        "--generations",
        "30",
        "--population",
        "40",
        "--out",
        str(out_file),
        "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data == json.loads(out_file.read_text())
    best = data["best"]
    assert best["mmacs"] <= 300 and 0.6 < best["accuracy"] < 0.9
    assert best["mmacs"] == pytest.approx(count_macs(W12, W12.validate(best["arch"])) / 1e6)
    assert data["predictor_space"] == "ofa_mbv3_w1.2" and data["space_mismatch"] is None
    assert {"latency_ms"} & set(best) == set()  # no table given, no latency claimed
    assert len(data["search"]["history"]) == 31 and data["search"]["n_evaluations"] == 40 * 31
    assert data["budgets"] == {"mmacs": 300.0} and data["provenance"]["command"]


def note10_search(
    capsys: pytest.CaptureFixture[str], ofa_files: dict[str, str], latency: str, *extra: str
) -> tuple[int, str, str]:
    """``ofabench search`` on the w1.2 space with OFA's Note10 table and predictor."""
    return run_cli(
        capsys, "search", "--space", "ofa_mbv3_w1.2", "--latency-table", ofa_files["lut"],
        "--predictor", ofa_files["predictor"], "--latency", latency, *extra,
    )  # fmt: skip


def test_search_on_note10_restricts_resolutions(
    capsys: pytest.CaptureFixture[str], ofa_files: dict[str, str]
) -> None:
    code, out, err = note10_search(capsys, ofa_files, "25ms", "--generations", "20", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["device"] == "note10" and data["best"]["latency_ms"] <= 25.0
    assert data["best"]["arch"]["r"] in (160, 176, 192, 208, 224)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--macs", "10M"], "smallest value reachable is"),
        (["--macs", "300"], "no unit"),
        (["--macs=-3M"], "positive"),
        (["--device", "no-such-phone", "--latency", "20ms"], "no-such-phone"),
        (["--latency", "20ms"], "needs a latency table"),
    ],
)
def test_bad_search_input_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], ofa_files: dict[str, str], args: list[str], needle: str
) -> None:
    code, _, err = run_cli(
        capsys, "search", "--space", "ofa_mbv3_w1.2", "--predictor", ofa_files["predictor"], *args
    )
    assert code == 1 and needle in one_line_error(err)


def test_a_predictor_of_another_space_is_one_line_unless_allowed(
    capsys: pytest.CaptureFixture[str], ofa_files: dict[str, str]
) -> None:
    argv = ["search", "--space", "ofa_mbv3_w1.0", "--predictor", ofa_files["predictor"]]
    argv += ["--macs", "300M", "--generations", "2", "--population", "10"]
    code, _, err = run_cli(capsys, *argv)
    line = one_line_error(err)
    assert code == 1 and "trained on space 'ofa_mbv3_w1.2'" in line and "'ofa_mbv3_w1.0'" in line
    code, out, err = run_cli(capsys, *argv, "--allow-space-mismatch", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["space"] == "ofa_mbv3_w1.0" and data["predictor_space"] == "ofa_mbv3_w1.2"
    assert "allow-space-mismatch" in data["space_mismatch"]
    code, out, _ = run_cli(capsys, *argv, "--allow-space-mismatch")
    assert code == 0 and out.startswith("warning: predictor ofa:")


def test_impossible_latency_names_the_smallest_reachable(
    capsys: pytest.CaptureFixture[str], ofa_files: dict[str, str]
) -> None:
    code, _, err = note10_search(capsys, ofa_files, "5ms")
    line = one_line_error(err)
    assert code == 1 and "latency_ms <= 5" in line and "smallest value reachable is 9.89" in line


# -- ofabench fit-predictor --------------------------------------------------------------------
def write_accuracy_csv(path: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    lines = ["arch,r,accuracy,macs,params"]
    for _ in range(n):
        arch = SMALL.sample(rng)
        acc = 0.55 + 0.005 * (arch.r - 24) + 0.004 * sum(arch.d)  # visible in the encoding
        data = arch.to_dict()
        data.pop("r")  # the r column supplies it, as sample-accuracy writes
        text = json.dumps(data).replace('"', '""')
        lines.append(f'"{text}",{arch.r},{acc:.5f},1,1')
    path.write_text("\n".join(lines) + "\n")


def test_fit_predictor_then_search_with_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data, model = tmp_path / "acc.csv", tmp_path / "pred.pt"
    write_accuracy_csv(data, 120)
    code, out, err = run_cli(
        capsys,
        "fit-predictor",
        "--data",
        str(data),
        "--space",
        "small32",
        "--out",
        str(model),
        "--epochs",
        "150",
        "--lr",
        "5e-3",
        "--hidden",
        "32",
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["n_train"] == 96 and report["n_val"] == 24 and model.is_file()
    assert report["kendall_tau"] > 0.6, report
    code, out, err = run_cli(
        capsys, "search", "--space", "small32", "--predictor", str(model), "--macs", "20M",
        "--generations", "10", "--population", "20", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["best"]["mmacs"] <= 20


def test_fit_predictor_refuses_a_bad_dataset(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text('arch,accuracy\n"{""ks"": [3], ""e"": [3], ""d"": [2], ""r"": 32}",0.5\n')
    code, _, err = run_cli(
        capsys, "fit-predictor", "--data", str(bad), "--space", "small32", "--out", "x.pt"
    )
    assert code == 1 and "data row 1" in one_line_error(err)
    bad.write_text("arch,acc\n")
    code, _, err = run_cli(
        capsys, "fit-predictor", "--data", str(bad), "--space", "small32", "--out", "x.pt"
    )
    assert code == 1 and "lacks column(s) ['accuracy']" in one_line_error(err)
