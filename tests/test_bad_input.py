"""Bad input never costs data and never prints a traceback (issue 12).

Every writing command is run with an output in a read-only folder, an output of the wrong kind
(a folder for a file, a file for a folder) and an output that is one of its inputs; every
subcommand is run through a table of bad inputs. Each must exit 1 with one ``ofabench: error:``
line, no traceback, and leave every input file as it was. Tiny files: the ``small32_w0.5``
space, scikit-learn's digits, a 3-channel 11-class ImageFolder of 8 px PNGs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ofabench.cli import main
from ofabench.devices.adb_backend import run_with_timeout
from ofabench.errors import BackendError, CheckpointError, ConfigError, DatasetError
from ofabench.latency import LatencyEntry, LatencyTable, resolution_ops
from ofabench.predictor.dataset import COLUMNS, META_FORMAT, AccuracyRow, meta_path, sample_arch
from ofabench.predictor.mlp import AccuracyPredictor, read_accuracy_table
from ofabench.provenance import atomic_open
from ofabench.space import get_space
from ofabench.supernet import OFAMobileNetV3
from ofabench.supernet.checkpoint import save_supernet
from ofabench.training.config import config_from_dict
from ofabench.training.data import DataConfig

pytest.importorskip("sklearn")
pytestmark = pytest.mark.usefixtures("one_thread")

SPACE = "small32_w0.5"
N_ROWS = 12
Files = dict[str, Path]


# -- fixtures ----------------------------------------------------------------------------------
def _accuracy_csv(folder: Path, space_name: str = SPACE) -> Path:
    """An accuracy dataset as sample-accuracy writes it (rows of seed 0 and a .meta.json), with
    made-up accuracies: fast, and all fit-predictor reads."""
    space = get_space(space_name)
    path = folder / "acc.csv"
    rows = [
        AccuracyRow(i, sample_arch(space, 0, i), 0.5 + 0.03 * i, 1000 + i, 100 + i)
        for i in range(N_ROWS)
    ]
    path.write_text(",".join(COLUMNS) + "\n" + "".join(r.to_line() for r in rows))
    identity = {"space": space.name, "space_fingerprint": space.fingerprint(), "seed": 0}
    meta_path(path).write_text(json.dumps({"format": META_FORMAT, "identity": identity}))
    return path


def _latency_table(space_name: str, device: str) -> LatencyTable:
    space = get_space(space_name)
    table = LatencyTable.for_space(space, device=device, backend="null")
    for r in space.resolutions:
        for op in resolution_ops(space, r).all_ops():
            if op not in table:
                table.add(op, LatencyEntry(0.5, 0.01, 10, 0.5))
    return table


def _image_folder(root: Path, classes: int, channels: int, bad_png: bool = False) -> Path:
    from PIL import Image

    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"class{c:02d}"
            folder.mkdir(parents=True)
            for i in range(2):
                pixels = np.full((8, 8, channels), 20 * c + i, dtype=np.uint8)
                Image.fromarray(pixels.squeeze()).save(folder / f"{i}.png")
    if bad_png:
        (root / "train" / "class00" / "broken.png").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    """One of each input file the commands read."""
    root = tmp_path_factory.mktemp("inputs")
    space = get_space(SPACE)
    torch.manual_seed(1)
    save_supernet(OFAMobileNetV3(space), root / "ck.pt")
    (root / "arch.json").write_text(space.max_arch().to_json())
    acc = _accuracy_csv(root)
    predictor = AccuracyPredictor(space, hidden_size=8)
    archs = [sample_arch(space, 0, i) for i in range(N_ROWS)]
    predictor.fit(archs, [0.5 + 0.03 * i for i in range(N_ROWS)], epochs=2)
    predictor.save(root / "p.pt")
    _latency_table(SPACE, "cpu-fake").save(root / "table.json")
    (root / "space.json").write_text(json.dumps(space.to_dict()))
    (root / "dev.yaml").write_text('backend: "null"\nsettings: {latency_ms: 1.0}\n')
    train = {
        "space": SPACE,
        "data": {"name": "digits", "max_train_images": 64},
        "optim": {"batch_size": 16, "bn_recal_images": 16, "eval_images": 16},
        "stages": [{"name": "full", "epochs": 1, "lr": 0.05}],
    }
    (root / "train.yaml").write_text(yaml.safe_dump(train))
    study = {"name": "mini", "train": "train.yaml", "devices": [{"name": "cpu-torch"}]}
    (root / "study.yaml").write_text(yaml.safe_dump(study))
    argv = ["pareto", "--space", SPACE, "--predictor", str(root / "p.pt"), *CHEAP_PARETO]
    assert main([*argv, "--out", str(root / "pareto.json")]) == 0
    (root / "folder").mkdir()
    return {p.name: p for p in root.iterdir()} | {"root": root, "acc.csv": acc}


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder no file can be created in: a chmod 555 folder, or for root (whom permissions do
    not stop) /sys, where creating a file is refused."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        probe = folder / "probe"
        probe.touch()
        probe.unlink()
        folder = Path("/sys")
        try:
            (folder / "ofabench-probe").touch()
            pytest.skip("no read-only folder available (root, and /sys is writable)")
        except OSError:
            pass
    except OSError:
        pass
    yield folder
    (tmp_path / "read-only").chmod(0o755)


def digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``: the inputs must not change."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def fails_cleanly(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI; it must exit 1 with one ``ofabench: error:`` line and no traceback."""
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("ofabench: error:")]
    assert code == 1, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert len(lines[0]) < 600, lines[0]
    return lines[0]


# -- outputs: every writing command x read-only folder / wrong kind / same as input ------------
# small settings, so that the code before the fix (which did the work first) ends soon too
CHEAP_PARETO = ["--macs", "3M,6M", "--population", "8", "--generations", "2", "--baselines", "none"]
CHEAP_MEASURE = ["--warmup", "0", "--repeats", "1", "--max-rounds", "1"]
# command -> (argv with OUT for the output, "file" or "folder", the input OUT may not be)
WRITERS: dict[str, tuple[Callable[[Files, str], list[str]], str, str]] = {
    "sample": (lambda f, o: ["sample", "--space", str(f["space.json"]), "--out", o], "file",
               "space.json"),
    "export": (lambda f, o: ["export", "--space", SPACE, "--arch", str(f["arch.json"]),
                             "--checkpoint", str(f["ck.pt"]), "--out", o], "file", "ck.pt"),
    "fit-predictor": (lambda f, o: ["fit-predictor", "--space", SPACE, "--data", str(f["acc.csv"]),
                                    "--epochs", "2", "--out", o], "file", "acc.csv"),
    "search": (lambda f, o: ["search", "--space", SPACE, "--predictor", str(f["p.pt"]),
                             "--macs", "5M", "--generations", "2", "--out", o], "file", "p.pt"),
    "pareto --out": (lambda f, o: ["pareto", "--space", SPACE, "--predictor", str(f["p.pt"]),
                                   *CHEAP_PARETO, "--out", o], "file", "p.pt"),
    "pareto --csv": (lambda f, o: ["pareto", "--space", SPACE, "--predictor", str(f["p.pt"]),
                                   *CHEAP_PARETO, "--out", str(f["root"] / "new.json"),
                                   "--csv", o], "file", "p.pt"),
    "pareto --report": (lambda f, o: ["pareto", "--space", SPACE, "--predictor", str(f["p.pt"]),
                                      *CHEAP_PARETO, "--out", str(f["root"] / "new.json"),
                                      "--report", o, "--name", "x"], "folder", "p.pt"),
    "report": (lambda f, o: ["report", "--input", str(f["pareto.json"]), "--name", "x",
                             "--out", o], "folder", "pareto.json"),
    "train": (lambda f, o: ["train", "--config", str(f["train.yaml"]), "--out", o,
                            "--no-progress"], "folder", "train.yaml"),
    "sample-accuracy": (lambda f, o: ["sample-accuracy", "--checkpoint", str(f["ck.pt"]),
                                      "--space", SPACE, "--data", "digits", "--n", "2",
                                      "--no-progress", "--out", o], "file", "ck.pt"),
    "profile": (lambda f, o: ["profile", "--device", str(f["dev.yaml"]), "--space", SPACE,
                              "--resolutions", "24", *CHEAP_MEASURE, "--out", o], "file",
                "dev.yaml"),
    "validate": (lambda f, o: ["validate", "--device", str(f["dev.yaml"]), "--space", SPACE,
                               "--table", str(f["table.json"]), "--n", "2", *CHEAP_MEASURE,
                               "--out", o], "folder", "table.json"),
    "study --work-dir": (lambda f, o: ["study", str(f["study.yaml"]), "--work-dir", o,
                                       "--report-dir", str(f["root"] / "r")], "folder",
                         "study.yaml"),
    "study --report-dir": (lambda f, o: ["study", str(f["study.yaml"]), "--work-dir",
                                         str(f["root"] / "w"), "--report-dir", o], "folder",
                           "study.yaml"),
    "replay": (lambda f, o: ["replay", "--device", str(f["dev.yaml"]), "--space", SPACE,
                             "--predictor", str(f["p.pt"]), "--latency-table",
                             str(f["table.json"]), "--out", o], "folder", "table.json"),
    "ship --dest": (lambda f, o: ["ship", str(f["study.yaml"]), "--name", "x", "--dest", o],
                    "folder", "study.yaml"),
    "demo": (lambda f, o: ["demo", "--out", o, "--no-progress"], "folder", "arch.json"),
}  # fmt: skip


@pytest.mark.parametrize("command", WRITERS)
def test_output_in_a_read_only_folder_is_refused_first(
    command: str, files: Files, read_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build, kind, _ = WRITERS[command]
    out = read_only / ("out.csv" if command == "sample-accuracy" else "out")
    before = digest(files["root"])
    message = fails_cleanly(capsys, build(files, str(out)))
    assert "cannot write" in message and str(read_only) in message
    assert digest(files["root"]) == before


@pytest.mark.parametrize("command", WRITERS)
def test_output_of_the_wrong_kind_is_refused_first(
    command: str, files: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    build, kind, _ = WRITERS[command]
    wrong = files["folder"] if kind == "file" else files["arch.json"]
    before = digest(files["root"])
    message = fails_cleanly(capsys, build(files, str(wrong)))
    expected = "is a folder; expected a file" if kind == "file" else "is a file; expected a folder"
    assert expected in message
    assert digest(files["root"]) == before


@pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
@pytest.mark.parametrize("command", WRITERS)
def test_output_that_is_an_input_is_refused_first(
    command: str, link: str, files: Files, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build, kind, name = WRITERS[command]
    target = files[name]
    out = target
    if link != "same":
        out = tmp_path / f"alias{target.suffix}"
        (out.symlink_to if link == "symlink" else out.hardlink_to)(target)
    before = digest(files["root"])
    message = fails_cleanly(capsys, build(files, str(out)))
    if kind == "file":
        assert "writing it would destroy the input" in message
    else:
        assert "expected a folder" in message
    assert digest(files["root"]) == before


def test_out_and_csv_naming_one_file_are_refused(
    files: Files, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "same.json")
    argv = ["pareto", "--space", SPACE, "--predictor", str(files["p.pt"]), *CHEAP_PARETO,
            "--out", out, "--csv", out]  # fmt: skip
    assert "name the same file" in fails_cleanly(capsys, argv)
    assert not (tmp_path / "same.json").exists()


def test_a_failed_report_leaves_no_empty_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "ofabench.pareto", "schema_version": 1}))
    out = tmp_path / "report"
    assert "'space' is missing" in fails_cleanly(
        capsys, ["report", "--input", str(bad), "--name", "x", "--out", str(out)]
    )
    assert not out.exists()


# -- bad input through every subcommand --------------------------------------------------------
def _bad_files(files: Files, root: Path) -> Files:
    """Broken variants of the inputs."""
    space = get_space(SPACE)
    bad: Files = {}
    bad["not_yaml.yaml"] = root / "not_yaml.yaml"
    bad["not_yaml.yaml"].write_text("kernel_choices: [3, 5\n")
    for name, change in (
        ("abc_space.yaml", {"kernel_choices": "abc"}),
        ("negative_res.yaml", {"resolutions": [-8, 32]}),
    ):
        bad[name] = root / name
        bad[name].write_text(yaml.safe_dump({**space.to_dict(), **change}))
    payload = torch.load(files["ck.pt"], weights_only=True)
    bad["no_state.pt"] = root / "no_state.pt"
    torch.save({k: v for k, v in payload.items() if k != "state_dict"}, bad["no_state.pt"])
    state = dict(payload["state_dict"])
    state["stem_conv.weight"] = torch.zeros(3, 3)
    bad["shape.pt"] = root / "shape.pt"
    torch.save({**payload, "state_dict": state}, bad["shape.pt"])
    bad["junk.pt"] = root / "junk.pt"
    bad["junk.pt"].write_bytes(files["ck.pt"].read_bytes()[:2000])
    bad["pickle.pt"] = root / "pickle.pt"
    torch.save({"state_dict": {}, "object": logging.getLogger("x")}, bad["pickle.pt"])
    for epochs in (1.5, "two", True):
        train = yaml.safe_load(files["train.yaml"].read_text())
        train["stages"][0]["epochs"] = epochs
        bad[f"epochs_{epochs}.yaml"] = root / f"epochs_{epochs}.yaml"
        bad[f"epochs_{epochs}.yaml"].write_text(yaml.safe_dump(train))
    train = yaml.safe_load(files["train.yaml"].read_text())
    train["data"]["max_train_images"] = -5
    bad["max_train.yaml"] = root / "max_train.yaml"
    bad["max_train.yaml"].write_text(yaml.safe_dump(train))
    study = yaml.safe_load(files["study.yaml"].read_text())
    study["search"] = {"budgets": "many"}
    bad["study_budgets.yaml"] = files["root"] / "study_budgets.yaml"  # beside train.yaml
    bad["study_budgets.yaml"].write_text(yaml.safe_dump(study))
    bad["no_points.json"] = root / "no_points.json"
    document = json.loads(files["pareto.json"].read_text())
    document.pop("points")
    bad["no_points.json"].write_text(json.dumps(document))
    bad["rgb11"] = _image_folder(root / "rgb11", classes=11, channels=3)
    bad["broken_png"] = _image_folder(root / "broken", classes=2, channels=1, bad_png=True)
    bad["other_table.json"] = root / "other_table.json"
    _latency_table(SPACE, "cpu-other").save(bad["other_table.json"])
    return bad


@pytest.fixture(scope="module")
def bad(files: Files, tmp_path_factory: pytest.TempPathFactory) -> Files:
    return _bad_files(files, tmp_path_factory.mktemp("bad"))


S = ["--space", SPACE]
# (command line built from the good and bad files, a part of the expected message)
BAD_INPUTS: dict[str, tuple[Callable[[Files, Files], list[str]], str]] = {
    "sample --n 0": (lambda f, b: ["sample", *S, "--n", "0"], "--n must be at least 1"),
    "sample, space file not YAML": (lambda f, b: ["sample", "--space", str(b["not_yaml.yaml"])],
                                    "is not valid YAML"),
    "count, kernel_choices abc": (lambda f, b: ["count", "--space", str(b["abc_space.yaml"]),
                                                "--arch", "max"], "kernel_choices"),
    "count, resolutions -8": (lambda f, b: ["count", "--space", str(b["negative_res.yaml"]),
                                            "--arch", "max"], "positive integers"),
    "count --arch a folder": (lambda f, b: ["count", *S, "--arch", str(f["folder"])],
                              "is a folder; expected a file"),
    "export --batch 0": (lambda f, b: ["export", *S, "--arch", "max", "--batch", "0",
                                       "--out", str(f["root"] / "x.onnx")], "--batch"),
    "export, no state_dict": (lambda f, b: ["export", *S, "--arch", "max", "--checkpoint",
                                            str(b["no_state.pt"]), "--out",
                                            str(f["root"] / "x.onnx")], "holds no state dict"),
    "export, wrong shape": (lambda f, b: ["export", *S, "--arch", "max", "--checkpoint",
                                          str(b["shape.pt"]), "--out", str(f["root"] / "x.onnx")],
                            "1 tensor(s) of another shape, e.g. stem_conv.weight (3, 3)"),
    "export, unreadable checkpoint": (lambda f, b: ["export", *S, "--arch", "max",
                                                    "--checkpoint", str(b["junk.pt"]), "--out",
                                                    str(f["root"] / "x.onnx")], "cannot read"),
    "export, pickled objects": (lambda f, b: ["export", *S, "--arch", "max", "--checkpoint",
                                              str(b["pickle.pt"]), "--out",
                                              str(f["root"] / "x.onnx")], "other than tensors"),
    "export --checkpoint a folder": (lambda f, b: ["export", *S, "--arch", "max",
                                                   "--checkpoint", str(f["folder"]), "--out",
                                                   str(f["root"] / "x.onnx")], "is a folder"),
    "fit-predictor, other space": (lambda f, b: ["fit-predictor", "--space", "small32", "--data",
                                                 str(f["acc.csv"]), "--out",
                                                 str(f["root"] / "q.pt")], "not 'small32'"),
    "fit-predictor --hidden 0": (lambda f, b: ["fit-predictor", *S, "--data", str(f["acc.csv"]),
                                               "--hidden", "0", "--out", str(f["root"] / "q.pt")],
                                 "at least 1"),
    "fit-predictor --epochs 0": (lambda f, b: ["fit-predictor", *S, "--data", str(f["acc.csv"]),
                                               "--epochs", "0", "--out", str(f["root"] / "q.pt")],
                                 "at least 1"),
    "fit-predictor --lr=-1": (lambda f, b: ["fit-predictor", *S, "--data", str(f["acc.csv"]),
                                            "--lr=-1", "--out", str(f["root"] / "q.pt")],
                              "learning rate"),
    "search, table of another device": (lambda f, b: ["search", *S, "--predictor", str(f["p.pt"]),
                                                      "--latency-table",
                                                      str(b["other_table.json"]), "--device",
                                                      "cpu-fake", "--latency", "50ms"],
                                        "measured on device 'cpu-other'"),
    "search --predictor a folder": (lambda f, b: ["search", *S, "--predictor", str(f["folder"]),
                                                  "--macs", "5M"], "is a folder"),
    "pareto, unreadable predictor": (lambda f, b: ["pareto", *S, "--predictor", str(b["junk.pt"]),
                                                   *CHEAP_PARETO, "--out",
                                                   str(f["root"] / "y.json")], "cannot read"),
    "report without points": (lambda f, b: ["report", "--input", str(b["no_points.json"]),
                                            "--name", "x", "--out", str(f["root"] / "rep")],
                              "'points' is missing"),
    "train, epochs 1.5": (lambda f, b: ["train", "--config", str(b["epochs_1.5.yaml"]), "--out",
                                        str(f["root"] / "run")], "epochs"),
    "train, epochs two": (lambda f, b: ["train", "--config", str(b["epochs_two.yaml"]), "--out",
                                        str(f["root"] / "run")], "epochs"),
    "train, epochs true": (lambda f, b: ["train", "--config", str(b["epochs_True.yaml"]),
                                         "--out", str(f["root"] / "run")], "epochs"),
    "train, max_train_images -5": (lambda f, b: ["train", "--config", str(b["max_train.yaml"]),
                                                 "--out", str(f["root"] / "run")],
                                   "max_train_images must be null or a positive integer"),
    "train --config a folder": (lambda f, b: ["train", "--config", str(f["folder"])],
                                "is a folder; expected a file"),
    "eval --recal-images 0": (lambda f, b: ["eval", "--checkpoint", str(f["ck.pt"]), *S,
                                            "--data", "digits", "--arch", "max",
                                            "--recal-images", "0"], "--recal-images"),
    "eval --recal-images=-5": (lambda f, b: ["eval", "--checkpoint", str(f["ck.pt"]), *S,
                                             "--data", "digits", "--arch", "max",
                                             "--recal-images=-5"], "--recal-images"),
    "eval, 3 channels 11 classes": (lambda f, b: ["eval", "--checkpoint", str(f["ck.pt"]), *S,
                                                  "--data", "imagefolder", "--data-root",
                                                  str(b["rgb11"]), "--arch", "max"],
                                    "3 channel(s) and 11 classes"),
    "eval, a non-image png": (lambda f, b: ["eval", "--checkpoint", str(f["ck.pt"]), *S,
                                            "--data", "imagefolder", "--data-root",
                                            str(b["broken_png"]), "--arch", "max"],
                              "broken.png cannot be read"),
    "eval, no state_dict": (lambda f, b: ["eval", "--checkpoint", str(b["no_state.pt"]), *S,
                                          "--data", "digits", "--arch", "max"], "no state dict"),
    "eval --checkpoint a folder": (lambda f, b: ["eval", "--checkpoint", str(f["folder"]), *S,
                                                 "--arch", "max"], "is a folder"),
    "sample-accuracy, 3 channels 11 classes": (
        lambda f, b: ["sample-accuracy", "--checkpoint", str(f["ck.pt"]), *S, "--data",
                      "imagefolder", "--data-root", str(b["rgb11"]), "--n", "2", "--out",
                      str(f["root"] / "new_acc.csv"), "--no-progress"],
        "3 channel(s) and 11 classes"),
    "study, search.budgets many": (lambda f, b: ["study", str(b["study_budgets.yaml"]),
                                                 "--work-dir", str(f["root"] / "w")],
                                   "budgets must be a positive integer, got 'many'"),
    "ship, a study file that is a folder": (
        lambda f, b: ["ship", str(f["folder"]), "--name", "x"],
        "is a folder; expected a file",
    ),
    "replay --out a file": (lambda f, b: ["replay", "--device", str(f["dev.yaml"]), *S,
                                          "--predictor", str(f["p.pt"]), "--out",
                                          str(f["p.pt"])], "expected a folder"),
    "demo --out a file": (lambda f, b: ["demo", "--out", str(f["arch.json"])],
                          "expected a folder"),
    "profile --out a folder": (lambda f, b: ["profile", "--device", str(f["dev.yaml"]), *S,
                                             "--out", str(f["folder"])], "is a folder"),
    "validate --table a folder": (lambda f, b: ["validate", "--device", str(f["dev.yaml"]), *S,
                                                "--table", str(f["folder"]), "--out",
                                                str(f["root"] / "v")], "folder"),
    "noise --rounds 3": (lambda f, b: ["noise", "--device", str(f["dev.yaml"]), *S, "--rounds",
                                       "3"], "rounds >= 4"),
    "noise, unknown device": (lambda f, b: ["noise", "--device", "no-such-device", *S],
                              "no-such-device"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_1(
    case: str, files: Files, bad: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    build, expected = BAD_INPUTS[case]
    before = digest(files["root"]), digest(bad["rgb11"].parent)
    message = fails_cleanly(capsys, build(files, bad))
    assert expected in message
    assert (digest(files["root"]), digest(bad["rgb11"].parent)) == before


def test_every_subcommand_is_in_the_bad_input_table() -> None:
    from ofabench.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    covered = {case.split()[0].rstrip(",") for case in BAD_INPUTS}
    covered |= {"devices", "spaces", "pretrained"}  # devices: below; the others read no input
    assert commands <= covered, sorted(commands - covered)


def test_a_missing_devices_dir_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OFABENCH_DEVICES_DIR", str(tmp_path / "missing"))
    message = fails_cleanly(capsys, ["devices"])
    assert "OFABENCH_DEVICES_DIR" in message and "not a folder" in message


def test_a_file_system_error_no_check_foresaw_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import ofabench.commands.arch as arch_commands

    def broken(args: object) -> None:
        raise PermissionError(13, "Permission denied", "/somewhere/x.json")

    monkeypatch.setattr(arch_commands, "cmd_spaces", broken)
    message = fails_cleanly(capsys, ["spaces"])
    assert message == "ofabench: error: /somewhere/x.json: Permission denied"


# -- fit-predictor trusts its input no more -----------------------------------------------------
def test_a_torn_last_row_is_dropped_as_sample_accuracy_drops_it(tmp_path: Path) -> None:
    path = _accuracy_csv(tmp_path)
    whole = path.read_text()
    path.write_text(whole[: whole.rindex(",0.8") + 4])  # the last row cut inside "0.83"
    archs, accs = read_accuracy_table(path, get_space(SPACE))
    assert len(archs) == N_ROWS - 1 and accs[-1] == pytest.approx(0.5 + 0.03 * (N_ROWS - 2))


def test_a_hand_written_csv_keeps_its_unterminated_last_row(tmp_path: Path) -> None:
    path = _accuracy_csv(tmp_path)
    meta_path(path).unlink()
    path.write_text(path.read_text().rstrip("\n"))
    archs, _ = read_accuracy_table(path, get_space(SPACE))
    assert len(archs) == N_ROWS


# -- silently wrong numbers ---------------------------------------------------------------------
def test_data_config_refuses_negative_counts() -> None:
    with pytest.raises(ConfigError, match="max_train_images"):
        DataConfig("digits", max_train_images=-5)
    with pytest.raises(ConfigError, match="val_size"):
        DataConfig("digits", val_size=0)
    assert DataConfig("digits", val_size=100).val_size == 100  # an image count stays an int


@pytest.mark.parametrize("epochs", [1.5, "two", True, 0])
def test_training_config_refuses_non_integer_epochs(epochs: object) -> None:
    stage = {"name": "full", "epochs": epochs, "lr": 0.1}
    with pytest.raises(ConfigError, match="epochs"):
        config_from_dict({"space": SPACE, "stages": [stage]})


@pytest.mark.parametrize(
    ("optim", "message"),
    [({"batch_size": 2.5}, "batch_size must be a positive integer, got 2.5"),
     ({"momentum": True}, "momentum must be a number"),
     ({"nesterov": "yes"}, "nesterov must be true or false"),
     ({"label_smoothing": 1.0}, "label_smoothing must be a number >= 0 and < 1")],
)  # fmt: skip
def test_training_config_checks_optim_types(optim: dict, message: str) -> None:
    stage = {"name": "full", "epochs": 1, "lr": 0.1}
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"space": SPACE, "stages": [stage], "optim": optim})


# -- one-line messages for unreadable files -----------------------------------------------------
def test_unreadable_checkpoints_are_one_short_line(bad: Files) -> None:
    from ofabench.files import load_torch

    for name, part in (("junk.pt", "not a torch file"), ("pickle.pt", "other than tensors")):
        with pytest.raises(CheckpointError) as info:
            load_torch(bad[name])
        text = str(info.value)
        assert part in text and "\n" not in text and len(text) < 400, text


def test_a_state_dict_mismatch_is_counted_not_listed(files: Files) -> None:
    from ofabench.supernet.checkpoint import load_supernet

    space = get_space("small32")  # another width: every tensor of another shape
    payload = torch.load(files["ck.pt"], weights_only=True)
    path = files["root"].parent / "bare.pt"
    torch.save(payload["state_dict"], path)
    with pytest.raises(CheckpointError, match=r"tensor\(s\) of another shape, e\.g\.") as info:
        load_supernet(path, space)
    assert len(str(info.value)) < 400


def test_a_folder_given_for_a_file_is_not_called_missing(tmp_path: Path) -> None:
    from ofabench.files import load_torch

    with pytest.raises(CheckpointError, match="is a folder; expected a file"):
        load_torch(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        read_accuracy_table(tmp_path / "nope.csv", get_space(SPACE))


# -- temporary files of a killed writer ---------------------------------------------------------
KILLED_WRITER = """
import os, signal, sys
from ofabench.provenance import atomic_open
with atomic_open(sys.argv[1]) as handle:
    handle.write("half")
    handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_temp_files_of_a_killed_writer_are_cleaned_on_the_next_write(tmp_path: Path) -> None:
    from ofabench.provenance import clean_stale_temps

    target = tmp_path / "t.json"
    run = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], check=False)
    assert run.returncode == -signal.SIGKILL
    stale = list(tmp_path.glob(".t.json.*.tmp"))
    assert len(stale) == 1 and not target.exists()
    legacy = tmp_path / ".t.json.abc123.tmp"  # the name before writers put their pid in it
    legacy.write_text("old")
    live = tmp_path / f".t.json.{os.getpid()}-live.tmp"  # a writer still running: kept
    live.write_text("in progress")
    other = tmp_path / ".u.json.1-x.tmp"  # another target's: not ours to remove
    other.write_text("u")
    with atomic_open(target) as handle:
        handle.write("whole")
    assert target.read_text() == "whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["t.json", live.name, other.name])
    assert clean_stale_temps(target) == []


# -- outputs checked directly ---------------------------------------------------------------------
def test_check_output_accepts_new_files_in_new_folders(tmp_path: Path) -> None:
    from ofabench.errors import OutputError
    from ofabench.files import check_output

    assert check_output(tmp_path / "a" / "b" / "c.json") == tmp_path / "a" / "b" / "c.json"
    assert check_output(tmp_path / "new", folder=True) == tmp_path / "new"
    assert check_output(None) is None
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output(tmp_path / "f" / "x.json")


# -- adb: what is being waited for ----------------------------------------------------------------
def test_a_hanging_adb_command_reports_what_it_waits_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = tmp_path / "adb"
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(0o755)
    timed_out = pytest.raises(BackendError, match="timed out after 1.2 s: is the device connected")
    with caplog.at_level(logging.INFO, logger="ofabench"), timed_out:
        run_with_timeout([str(fake), "shell", "benchmark_model"], 1.2, heartbeat_s=0.4)
    waits = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert waits and "benchmark_model" in waits[0] and "time-out 1.2 s" in waits[0]
