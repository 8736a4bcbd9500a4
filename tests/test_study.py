"""``ofabench study`` on a miniature config (a two-stage space, tiny digits data, ONNX Runtime
for real): every step, the report, resuming, and bad study files."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ofabench.cli import main
from ofabench.errors import ConfigError, StudyError
from ofabench.study import load_study, study_from_dict
from ofabench.study import report as study_report
from ofabench.study import steps as study_steps
from ofabench.study.runner import Study

from .conftest import TINY_SPACE

pytest.importorskip("sklearn")
pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.usefixtures("one_thread")

QUICK = {"warmup": 1, "repeats": 3, "max_rounds": 1}


def mini_study() -> dict[str, Any]:
    return {
        "name": "mini",
        "threads": 1,
        "train": {
            "space": TINY_SPACE,
            "seed": 0,
            "data": {"name": "digits", "max_train_images": 64},
            "optim": {
                "batch_size": 16,
                "bn_recal_images": 32,
                "eval_images": 32,
                "eval_batch_size": 64,
            },
            "stages": [
                {"name": "full", "epochs": 1, "lr": 0.05},
                {"name": "kernel", "epochs": 1, "lr": 0.02},
                {"name": "depth_1", "epochs": 1, "lr": 0.02},
                {"name": "expand_1", "epochs": 1, "lr": 0.02},
            ],
        },  # fmt: skip
        # tables made minutes before on the same (possibly busy) machine: rescale, never stop
        "devices": [{"name": "cpu-onnxruntime", "calibrate": 2, "validate_n": 4,
                     "speed_check": "rescale", **QUICK}],  # fmt: skip
        "accuracy": {"n": 16, "recal_images": 32, "batch_size": 64},
        "predictor": {"epochs": 20, "hidden": 32},
        "search": {"budgets": 2, "population": 16, "generations": 5},
        "compare": {"n": 3, "recal_images": 32, "batch_size": 64, "n_boot": 200},
        "scratch": {"n": 1},
        "baselines": ["no_ps", "sandwich"],
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Study:
    """The miniature study run once to the end (shared by the tests that read its outputs)."""
    root = tmp_path_factory.mktemp("study")
    config = study_from_dict(mini_study(), root, "mini", root / "work", root / "report")
    study = Study(config, command="pytest mini study")
    study.run()
    return study


def test_every_step_finishes_and_records_its_wall_time(finished: Study) -> None:
    steps = finished.state["steps"]
    names = [n for n, _ in finished.plan()]
    assert list(steps) == names
    assert names[:4] == ["train_ps", "train_no_ps", "train_sandwich", "compare"]
    assert {"profile_cpu-onnxruntime", "validate_cpu-onnxruntime", "report"} <= set(names)
    for name, entry in steps.items():
        assert entry["status"] == "done", name
        assert entry["wall_s"] > 0.0, name
    assert Path(steps["train_ps"]["summary"]["checkpoint"]).exists()
    assert steps["train_ps"]["summary"]["train_seconds"] > 0.0


def test_outputs_are_consistent_with_each_other(finished: Study) -> None:
    s = finished.state["steps"]
    assert s["accuracy"]["summary"]["rows"] == 16
    predictor = s["predictor"]["summary"]
    assert predictor["n_train"] + predictor["n_val"] == 16
    search = s["search_cpu-onnxruntime"]["summary"]
    assert len(search["budgets"]) == 2 and search["budgets"][0] < search["budgets"][1]
    for chosen in search["chosen"]:
        assert chosen["latency_ms"] <= chosen["budget"] + 1e-9
    compare = s["compare"]["summary"]
    assert compare["n"] == 3 and compare["nets"] == ["ps", "no_ps", "sandwich"]
    rows = (finished.work / "compare" / "random_subnets.csv").read_text().splitlines()
    assert len(rows) == 4  # header + 3 subnets, each evaluated on every supernet
    assert rows[0].split(",")[2:] == ["ps_test", "no_ps_test", "sandwich_test"]
    passes = {n: s[f"train_{n}"]["summary"]["subnet_passes"] for n in compare["nets"]}
    assert passes["ps"] > 0 and passes["no_ps"] == passes["sandwich"] == passes["ps"]
    assert s["train_ps"]["summary"]["teacher_passes"] > 0
    assert s["train_sandwich"]["summary"]["teacher_passes"] == 0
    for baseline, d in compare["paired"].items():
        assert d["ci_low"] <= d["mean"] <= d["ci_high"], baseline
        mean = compare["test_mean"]["ps"] - compare["test_mean"][baseline]
        assert d["mean"] == pytest.approx(mean, abs=1e-6)  # images per subnet are equal
    cv = s["predictor"]["summary"]["cv"]
    assert cv["splits"] == 5 and cv["n_val"] == predictor["n_val"]  # 3 subnets: tau may be nan
    scratch = s["scratch"]["summary"]["archs"]
    assert len(scratch) == 1 and 0.0 <= scratch[0]["scratch_test"] <= 1.0
    assert scratch[0]["arch"] in [c["arch"] for c in search["chosen"]]
    evaluated = [json.loads(line) for line in (finished.work / "compare" / "evaluations.jsonl").open()]
    ps_row = [r for r in evaluated if r["net"] == "ps" and json.loads(r["arch"]) == scratch[0]["arch"]]
    assert scratch[0]["ofa_test"] == ps_row[-1]["acc"]["test_acc"]  # the same arch, from the cache
    # a scratch run's budget: every image of every epoch through its one architecture
    metrics = (Path(scratch[0]["dir"]) / "metrics.csv").read_text().splitlines()
    assert scratch[0]["subnet_passes"] == 64 * (len(metrics) - 1) > 0


def test_evaluations_on_the_first_test_images_are_not_mixed_with_whole_split_ones(
    finished: Study, tmp_path: Path
) -> None:
    """``compare.test_images``: a cached evaluation made on another number of test images is
    redone, not reused (the study's cache holds whole-split rows)."""
    import shutil

    from ofabench.space import ArchConfig

    work = tmp_path / "work"
    shutil.copytree(finished.work, work)  # the shared study's cache stays as it is
    arch = ArchConfig.from_dict(finished.summary("compare")["largest"]["arch"])
    whole = study_steps._Evaluations(finished)._row("ps", arch)
    data = {**mini_study(), "compare": {**mini_study()["compare"], "test_images": 10},
            "scratch": {"n": 0}}  # fmt: skip
    limited = Study(study_from_dict(data, tmp_path, "mini", work, tmp_path / "report"))
    row = study_steps._Evaluations(limited)._row("ps", arch)
    assert whole["n_test"] > 10 and row["n_test"] == 10 and row["test_images"] == 10
    assert study_steps._Evaluations(limited)._row("ps", arch) == row  # now cached, reused
    assert study_steps.test_split_label(limited) == "first 10 test images"


def test_report_has_every_section_and_points_from_every_method(finished: Study) -> None:
    report = Path(finished.config.report_dir)
    text = (report / "README.md").read_text()
    for heading in ("The seed's claims", "Latency tables and their validation",
                    "Accuracy predictor", "Accuracy–latency fronts", "Cross-device view",
                    "Wall time per step"):  # fmt: skip
        assert heading in text, heading
    assert "pytest mini study" in text
    points = (report / "cpu-onnxruntime" / "points.csv").read_text()
    for method in ("evolution", "random", "uniform", study_steps.SEARCH_METHOD_MEASURED,
                   "no-PS supernet (measured)", "sandwich supernet (measured)",
                   study_steps.SCRATCH_METHOD):  # fmt: skip
        assert method in points, method
    claims = json.loads((report / "claims.json").read_text())
    assert set(claims["runs"]) == {"ps", "no_ps", "sandwich"}
    assert set(claims["ps_minus_baseline"]) == {"no_ps", "sandwich"}
    assert claims["runs"]["no_ps"]["subnet_passes"] == claims["runs"]["ps"]["subnet_passes"]
    assert "PS − sandwich on 3 random subnets" in text and "Each supernet's budget" in text
    assert (report / "cpu-onnxruntime" / "accuracy_latency.png").stat().st_size > 0
    assert (report / "validation" / "cpu-onnxruntime.png").exists()
    noise = finished.summary("profile_cpu-onnxruntime")["noise"]  # measured before profiling
    assert noise["device"] == "cpu-onnxruntime" and noise["space"] == "tiny_study"
    assert len(noise["medians_ms"]) == 6 and finished.summary("validate_cpu-onnxruntime")["noise"]
    assert f"| {100 * noise['within_session_cv']:.1f} / " in text
    chosen = json.loads((report / "cross_device.json").read_text())["chosen"]["cpu-onnxruntime"]
    assert [c["budget_ms"] for c in chosen] == finished.state["steps"][
        "search_cpu-onnxruntime"]["summary"]["budgets"][: len(chosen)]  # fmt: skip


def test_report_counts_what_ran_before_the_study(finished: Study) -> None:
    from ofabench.study.report import _before_study, _steps_section, total_wall

    assert _before_study(finished) == ""  # everything ran inside this study
    study = copy.copy(finished)
    study.state = copy.deepcopy(finished.state)
    steps = study.state["steps"]
    steps["train_ps"]["summary"]["train_seconds"] = 600.0
    steps["train_no_ps"]["summary"]["train_seconds"] = 900.0
    steps["accuracy"]["summary"]["skipped"] = 16
    text = _before_study(study)
    parallel = finished.config.parallel_training
    longest = 900.0 if parallel else 1500.0
    assert "train_ps 10.0 min, train_no_ps 15.0 min" in text
    assert f"With the training: {(total_wall(study) + longest) / 60:.1f} min" in text
    assert "16 rows of the accuracy dataset were made before it" in text
    assert "16 rows made before this study resumed it" in _steps_section(study)


def test_a_second_run_redoes_nothing(finished: Study) -> None:
    before = copy.deepcopy(finished.state["steps"])
    again = Study(finished.config, command="again")
    again.run()
    after = again.state["steps"]
    for name in before:
        assert after[name]["wall_s"] == before[name]["wall_s"], name
        assert after[name]["attempts"] == before[name]["attempts"], name


def test_a_failed_step_is_recorded_and_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = study_from_dict(mini_study(), tmp_path, "mini", tmp_path / "w", tmp_path / "r")
    real = study_steps.accuracy
    calls = {"n": 0}

    def flaky(study: Study) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConfigError("simulated failure")
        return real(study)

    monkeypatch.setattr(study_steps, "accuracy", flaky)
    with pytest.raises(StudyError, match="'accuracy' failed: simulated failure.*resume"):
        Study(config).run(until="predictor")
    state = json.loads((tmp_path / "w" / "study.json").read_text())
    assert state["steps"]["accuracy"]["status"] == "failed"
    assert state["steps"]["train_ps"]["status"] == "done"
    trained = state["steps"]["train_ps"]["wall_s"]
    study = Study(config)
    study.run(until="predictor")
    assert study.state["steps"]["accuracy"]["status"] == "done"
    assert study.state["steps"]["accuracy"]["attempts"] == 2
    assert study.state["steps"]["train_ps"]["wall_s"] == trained
    assert "search_cpu-onnxruntime" not in study.state["steps"]


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(colour="red"), "unknown key"),
        (lambda d: d.pop("devices"), "missing key 'devices'"),
        (lambda d: d.update(devices=["cpu-onnxruntime", "cpu-onnxruntime"]), "listed twice"),
        (lambda d: d["search"].update(low_quantile=1.5), "low_quantile"),
        (lambda d: d["scratch"].update(device="pixel"), "not one of the devices"),
        (lambda d: d["devices"][0].update(speed=3), "unknown key"),
        (lambda d: d.update(threads=0), "threads must be a positive integer"),
        (lambda d: d.update(train="missing.yaml"), "does not exist"),
        (lambda d: d["devices"][0].update(probe_resolution=8), "probe_resolution"),
        (lambda d: d["compare"].update(test_images=100), "whole test split"),
    ],
)
def test_bad_study_files_are_refused(change: Any, message: str, tmp_path: Path) -> None:
    data = mini_study()
    change(data)
    with pytest.raises(ConfigError, match=message):
        study_from_dict(data, tmp_path)


def test_unavailable_device_is_an_error_unless_optional(tmp_path: Path) -> None:
    data = mini_study()
    data["devices"].append({"name": "pixel"})
    config = study_from_dict(data, tmp_path, "mini", tmp_path / "w", tmp_path / "r")
    with pytest.raises(ConfigError, match="'pixel' cannot run here"):
        Study(config).plan()
    data["optional_devices"] = True
    study = Study(study_from_dict(data, tmp_path, "mini", tmp_path / "w", tmp_path / "r"))
    names = [n for n, _ in study.plan()]
    assert "profile_pixel" not in names and "pixel" in study.state["skipped_devices"]


def test_a_work_dir_of_another_training_config_is_refused(tmp_path: Path) -> None:
    config = study_from_dict(mini_study(), tmp_path, "mini", tmp_path / "w", tmp_path / "r")
    Study(config).save()
    data = mini_study()
    data["train"]["seed"] = 1
    other = study_from_dict(data, tmp_path, "mini", tmp_path / "w", tmp_path / "r")
    with pytest.raises(ConfigError, match="another training config"):
        Study(other)


def test_cli_lists_steps_and_reports_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump(mini_study()))
    assert (
        main(["study", str(path), "--work-dir", str(tmp_path / "w"), "--list-steps", "--json"]) == 0
    )
    steps = json.loads(capsys.readouterr().out)["steps"]
    assert steps[0] == "train_ps" and steps[-1] == "report"
    assert main(["study", str(tmp_path / "nope.yaml")]) == 1
    assert "study file" in capsys.readouterr().err
    assert main(["study", str(path), "--work-dir", str(tmp_path / "w"), "--until", "bogus"]) == 1
    assert "unknown study step 'bogus'" in capsys.readouterr().err


def test_shipped_study_files_load() -> None:
    repo = Path(__file__).resolve().parent.parent
    config = load_study(repo / "studies" / "fashion_mnist.yaml")
    assert config.train["data"]["name"] == "fashion_mnist"
    assert {d.name for d in config.devices} == {
        "cpu-torch",
        "cpu-onnxruntime",
        "cpu-litert",
        "cpu-tvm",
    }
    from ofabench.commands.study import demo_config_text

    demo = study_from_dict(yaml.safe_load(demo_config_text()), Path("."))
    assert demo.train["data"]["name"] == "digits"


def test_a_finished_study_ships_its_supernet_by_name(
    finished: Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    study_file = tmp_path / "mini.yaml"
    data = {**mini_study(), "work_dir": str(finished.work),
            "report_dir": str(finished.config.report_dir)}  # fmt: skip
    study_file.write_text(yaml.safe_dump(data))
    dest = tmp_path / "pretrained"
    argv = ["ship", str(study_file), "--name", "mini_ps", "--dest", str(dest), "--json"]
    assert main(argv) == 0
    shipped = json.loads(capsys.readouterr().out)
    manifest = json.loads((dest / "mini_ps" / "manifest.json").read_text())
    assert manifest["space"] == "tiny_study" and manifest["made_by"]["study"] == str(study_file)
    assert shipped["figures"]["largest_test"] == finished.state["steps"]["compare"]["summary"][
        "largest"]["ps_test"]  # fmt: skip
    checkpoint = Path(finished.state["steps"]["train_ps"]["summary"]["checkpoint"])
    assert (dest / "mini_ps" / "supernet.pt").read_bytes() == checkpoint.read_bytes()
    monkeypatch.setenv("OFABENCH_PRETRAINED_DIR", str(dest))
    assert main(["pretrained", "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)["models"]) == ["mini_ps"]
    # the study's space is defined inline: verifying rebuilds it from the shipped config
    assert main(["pretrained", "--verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["problems"] == {"mini_ps": []}


def test_a_pretrained_study_starts_from_the_shipped_model(
    finished: Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pretrained: NAME`` (what ``ofabench demo`` runs): short trainings of every strategy, no
    compare/accuracy/predictor/scratch steps, and the searched subnets measured on the *shipped*
    supernet with the shipped predictor; the report says which figures are whose."""
    import torch

    from ofabench.pretrained import ship
    from ofabench.space import ArchConfig
    from ofabench.supernet.checkpoint import load_supernet
    from ofabench.training.evaluate import SubnetEvaluator

    report = Path(finished.config.report_dir)
    summary = finished.summary
    files = {"supernet": summary("train_ps")["checkpoint"],
             "config": Path(summary("train_ps")["checkpoint"]).parent / "config.yaml",
             "predictor": finished.predictor_path, "accuracy": finished.accuracy_csv}  # fmt: skip
    dest = tmp_path / "pretrained"
    claims = json.loads((report / "claims.json").read_text())
    ship("mini_ps", files, "tiny_study", "digits", {"largest_test": 0.5}, {"study": "mini"},
         dest, claims=claims)  # fmt: skip
    monkeypatch.setenv("OFABENCH_PRETRAINED_DIR", str(dest))

    data = mini_study()
    data["pretrained"] = "mini_ps"
    data["train"] = {**data["train"], "stages": data["train"]["stages"][:2]}
    # what the demo does to be quick: a smaller drift probe, the first test images only
    data["devices"][0]["probe_resolution"] = 64
    data["compare"]["test_images"] = 25
    root = tmp_path / "run"
    study = Study(study_from_dict(data, root, "mini-pretrained", root / "work", root / "report"))
    study.run()
    assert list(study.state["steps"]) == [
        "train_ps", "train_no_ps", "train_sandwich", "pretrained", "profile_cpu-onnxruntime",
        "validate_cpu-onnxruntime", "search_cpu-onnxruntime", "measure_searched", "report",
    ]  # fmt: skip
    assert study.summary("pretrained")["supernet"] == str(dest / "mini_ps" / "supernet.pt")
    assert study.predictor_path == dest / "mini_ps" / "predictor.pt"
    # the measured accuracy is the shipped supernet's, not this run's short PS run's
    chosen = study.summary("measure_searched")["cpu-onnxruntime"][0]
    c = data["compare"]
    direct = SubnetEvaluator(load_supernet(files["supernet"], study.space), study.dataset(),
                             ("test",), c["recal_images"], 25, c["batch_size"])  # fmt: skip
    assert chosen["ps_test"] == pytest.approx(
        direct(ArchConfig.from_dict(chosen["arch"]))["test_acc"], abs=1e-6
    )
    assert "first 25 test images" in (root / "report" / "README.md").read_text()
    table = json.loads(study.table_path("cpu-onnxruntime").read_text())
    assert table["provenance"]["probe"]["model"].endswith("at 64 px, seed 0")
    used = study_steps._supernet(study, "ps").state_dict()
    shipped_sd = load_supernet(files["supernet"], study.space).state_dict()
    own_sd = load_supernet(study.summary("train_ps")["checkpoint"], study.space).state_dict()
    assert all(torch.equal(used[k], shipped_sd[k]) for k in used)
    assert not all(torch.equal(used[k], own_sd[k]) for k in used)
    assert set(chosen) >= {"ps_test"} and "no_ps_test" not in chosen
    text = (root / "report" / "README.md").read_text()
    assert "## The shipped supernet (figures from its own study" in text
    assert "## This run's short trainings" in text
    written = json.loads((root / "report" / "claims.json").read_text())
    assert written["pretrained"]["claims"] == claims
    assert set(written["short_training"]) == {"ps", "no_ps", "sandwich"}
    # budget-matched short runs: equal subnet passes
    passes = {k: v["subnet_passes"] for k, v in written["short_training"].items()}
    assert len(set(passes.values())) == 1, passes


def test_the_demo_starts_from_the_shipped_supernet_or_says_why_not(
    finished: Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ofabench.commands import study as study_cmd
    from ofabench.pretrained import ship

    monkeypatch.setenv("OFABENCH_PRETRAINED_DIR", str(tmp_path / "none"))
    name, why = study_cmd.demo_choice()
    assert name == "demo.yaml" and "'fashion_mnist_ps' is not in this installation" in why
    summary = finished.summary
    files = {"supernet": summary("train_ps")["checkpoint"],
             "config": Path(summary("train_ps")["checkpoint"]).parent / "config.yaml",
             "predictor": finished.predictor_path, "accuracy": finished.accuracy_csv}  # fmt: skip
    ship("fashion_mnist_ps", files, "tiny_study", "fashion_mnist", {}, {}, tmp_path / "p")
    monkeypatch.setenv("OFABENCH_PRETRAINED_DIR", str(tmp_path / "p"))
    from ofabench.training import data as data_module

    monkeypatch.setattr(data_module, "FASHION_MNIST_DIR", tmp_path / "no-fashion")
    name, why = study_cmd.demo_choice()
    assert name == "demo.yaml" and "Fashion-MNIST not found" in why
    monkeypatch.undo()
    monkeypatch.setenv("OFABENCH_PRETRAINED_DIR", str(tmp_path / "p"))
    if data_module.dataset_missing(data_module.DataConfig("fashion_mnist")):
        pytest.skip("Fashion-MNIST is not installed here (apt-get install dataset-fashion-mnist)")
    assert study_cmd.demo_choice() == ("demo_pretrained.yaml", None)
    assert study_cmd.demo_choice(toy=True)[0] == "demo.yaml"
    config = study_from_dict(yaml.safe_load(study_cmd.demo_config_text("demo_pretrained.yaml")),
                             Path("."))  # fmt: skip
    assert config.pretrained == "fashion_mnist_ps" and config.baselines == ("no_ps", "sandwich")


def test_jobs_start_in_order_once_their_prerequisites_have_finished() -> None:
    from ofabench.study.runner import ready_jobs

    jobs = [("a", []), ("b", []), ("c", []), ("d", [])]
    after = {"c": ["a"], "d": ["x"]}  # x is not one of the call's jobs: met
    call = {"a", "b", "c", "d"}
    assert [j[0] for j in ready_jobs(jobs, after, set(), call, 2)] == ["a", "b"]
    assert [j[0] for j in ready_jobs(jobs[2:], after, {"b"}, call, 1)] == ["d"]  # c waits for a
    assert [j[0] for j in ready_jobs(jobs[2:], after, {"a"}, call, 2)] == ["c", "d"]


def test_parallel_training_samples_the_accuracy_dataset_beside_the_baselines(
    tmp_path: Path,
) -> None:
    """With ``parallel_training`` the accuracy dataset is sampled by a process started once PS
    has finished (it loads PS's final checkpoint, which exists only then); the accuracy step
    then evaluates nothing itself and the report says where the rows came from."""
    data = mini_study()
    data.update(parallel_training=True, baselines=["no_ps"])
    data["train"] = {**data["train"], "stages": data["train"]["stages"][:2]}
    data["accuracy"] = {**data["accuracy"], "n": 6}
    root = tmp_path
    study = Study(study_from_dict(data, root, "mini-parallel", root / "work", root / "report"))
    study.run(until="accuracy")
    assert study.state["accuracy_alongside"] is True
    logs = sorted(p.name for p in (root / "work" / "logs").iterdir())
    assert logs == ["accuracy_alongside.log", "train_no_ps.log", "train_ps.log"]
    summary = study.summary("accuracy")
    assert summary["rows"] == 6 and summary["evaluated"] == 0 and summary["skipped"] == 6
    text = study_report._accuracy_origin(study, summary)
    assert "run beside the baselines' training once PS had finished" in text


def test_a_study_resumed_after_ps_samples_the_accuracy_dataset_beside_the_baselines(
    tmp_path: Path,
) -> None:
    """PS finished in an earlier run (here: trained in-process), the baselines not yet: the
    resumed study starts the accuracy sampling beside them at once (it used to leave a core idle
    for the whole of the baselines' training)."""
    data = mini_study()
    data.update(parallel_training=False, baselines=["no_ps"])
    data["train"] = {**data["train"], "stages": data["train"]["stages"][:2]}
    data["accuracy"] = {**data["accuracy"], "n": 6}
    root = tmp_path
    Study(study_from_dict(data, root, "mini-resumed", root / "work", root / "report")).run(
        until="train_ps"
    )
    data["parallel_training"] = True
    study = Study(study_from_dict(data, root, "mini-resumed", root / "work", root / "report"))
    study.run(until="accuracy")
    assert study.state["accuracy_alongside"] is True
    logs = sorted(p.name for p in (root / "work" / "logs").iterdir())
    assert logs == ["accuracy_alongside.log", "train_no_ps.log"]  # PS was not trained again
    summary = study.summary("accuracy")
    assert summary["rows"] == 6 and summary["evaluated"] == 0 and summary["skipped"] == 6
