"""The adb backend: benchmark_model output parsing, adb command building, and whole measurements
against a stand-in ``adb`` executable placed first on PATH (no phone needed)."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from ofabench.devices.adb_backend import (
    NO_ADB,
    NO_DEVICE,
    AdbBackend,
    AdbRunner,
    AdbSettings,
    benchmark_argv,
    parse_benchmark_output,
    parse_devices,
    parse_stat_line,
)
from ofabench.devices.base import MeasureSettings
from ofabench.devices.registry import get_backend
from ofabench.errors import BackendError, ConfigError

DATA = Path(__file__).parent / "data"
ONE_ROUND = MeasureSettings(warmup=2, repeats=5, max_rounds=1)

FAKE_ADB = """#!{python}
import json, os, shutil, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_ADB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:1] == ["-s"]:
    args = args[2:]
hang = float(os.environ.get("FAKE_ADB_HANG", "0"))
if args[0] == "devices":
    print("List of devices attached")
    print(os.environ.get("FAKE_ADB_DEVICES", "0A1B2C3D\\tdevice"))
elif args[0] == "push":
    if not os.path.isfile(args[1]):
        print("adb: error: cannot stat " + repr(args[1]))
        sys.exit(1)
    if os.environ.get("FAKE_ADB_KEEP"):
        shutil.copy(args[1], os.environ["FAKE_ADB_KEEP"])
    print(args[1] + ": 1 file pushed, 0 skipped.")
elif args[0] == "shell" and any("benchmark_model" in a for a in args):
    if hang:
        time.sleep(hang)
    with open(os.environ["FAKE_ADB_OUTPUT"]) as f:
        sys.stdout.write(f.read())
    sys.exit(int(os.environ.get("FAKE_ADB_EXIT", "0")))
elif args[0] == "shell" and args[1] == "getprop":
    print({{"ro.product.model": "Pixel 7", "ro.build.version.release": "14"}}.get(args[2], ""))
"""


# -- the parser ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fixture", "count", "avg", "std", "median", "init", "warmup"),
    [
        # LiteRT / TF >= 2.13: percentiles and the median on the count= line, INFO: prefixes
        ("benchmark_model_litert.txt", 824, 1196.61, 61, 1180, 12371, 1208.42),
        # TF 2.x before percentiles: no median, so the mean is the central value
        ("benchmark_model_tf2.txt", 76, 13154.3, 236, None, 31042, 13522.7),
        # op profiling adds "Timings (microseconds):" tables; the timed-run line still wins
        ("benchmark_model_op_profiling.txt", 6723, 147.882, 9, 146, 4402, 149.807),
        # TF 1.x: "Running benchmark for 50 iterations", "Average inference timings in us"
        ("benchmark_model_legacy.txt", 50, 79732, 1929, None, 38467, 83235),
    ],
)
def test_parses_benchmark_model_output_formats(
    fixture: str,
    count: int,
    avg: float,
    std: float,
    median: float | None,
    init: float,
    warmup: float,
) -> None:
    stats = parse_benchmark_output((DATA / fixture).read_text())
    assert stats.count == count
    assert stats.avg_us == pytest.approx(avg)
    assert stats.std_us == pytest.approx(std)
    assert stats.median_us == (None if median is None else pytest.approx(median))
    assert stats.init_us == pytest.approx(init)
    assert stats.warmup_avg_us == pytest.approx(warmup)
    assert stats.center_us == pytest.approx(median if median is not None else avg)


def test_parses_the_summary_line_alone() -> None:
    text = "INFO: Inference timings in us: Init: 4402, First inference: 391, Warmup (avg): 149.8, Inference (avg): 147.9\n"
    stats = parse_benchmark_output(text)
    assert (stats.count, stats.avg_us, stats.first_inference_us) == (0, 147.9, 391)


def test_parses_a_stat_line_with_all_runs_equal() -> None:
    assert parse_stat_line("count=3 curr=100(all same)") == {
        "count": 3, "curr": 100, "avg": 100, "min": 100, "max": 100, "std": 0.0,
    }  # fmt: skip
    assert parse_stat_line("Memory footprint delta") is None


def test_failed_benchmark_reports_its_error_lines() -> None:
    with pytest.raises(BackendError, match="Failed to mmap model"):
        parse_benchmark_output((DATA / "benchmark_model_failed.txt").read_text())
    with pytest.raises(BackendError, match="no output"):
        parse_benchmark_output("")


def test_parses_adb_devices() -> None:
    output = (
        "* daemon not running; starting now at tcp:5037\n* daemon started successfully\n"
        "List of devices attached\n0A1B2C3D\tdevice\nemulator-5554\toffline\n"
        "R58M\tunauthorized\n\n"
    )
    assert parse_devices(output) == [
        ("0A1B2C3D", "device"), ("emulator-5554", "offline"), ("R58M", "unauthorized"),
    ]  # fmt: skip


# -- command building -----------------------------------------------------------------------------------
GRAPH = "/data/local/tmp/ofabench/m.tflite"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {},
            ["/data/local/tmp/benchmark_model", f"--graph={GRAPH}", "--num_threads=1",
             "--warmup_runs=10", "--num_runs=50", "--use_xnnpack=true"],
        ),
        (
            {"threads": 4, "use_xnnpack": False, "use_gpu": True},
            ["/data/local/tmp/benchmark_model", f"--graph={GRAPH}", "--num_threads=4",
             "--warmup_runs=10", "--num_runs=50", "--use_xnnpack=false", "--use_gpu=true"],
        ),
        (
            {"taskset": "f0", "benchmark_binary": "/data/local/tmp/bm"},
            ["taskset", "f0", "/data/local/tmp/bm", f"--graph={GRAPH}", "--num_threads=1",
             "--warmup_runs=10", "--num_runs=50", "--use_xnnpack=true"],
        ),
    ],
)  # fmt: skip
def test_benchmark_command(settings: dict, expected: list[str]) -> None:
    assert benchmark_argv(AdbSettings(**settings), GRAPH, 50, 10) == expected


def test_adb_command_with_and_without_serial() -> None:
    assert AdbRunner().command("push", "a", "b") == ["adb", "push", "a", "b"]
    assert AdbRunner("/opt/adb", "R58M").command("shell", "ls") == [
        "/opt/adb", "-s", "R58M", "shell", "ls",
    ]  # fmt: skip


def test_remote_paths_are_quoted_for_the_device_shell() -> None:
    argv = benchmark_argv(AdbSettings(), "/data/local/tmp/my dir/m.tflite", 5, 0)
    assert argv[1] == "--graph='/data/local/tmp/my dir/m.tflite'"


@pytest.mark.parametrize(
    "settings",
    [
        {"taskset": "big"},
        {"threads": 0},
        {"num_runs": 0},
        {"warmup_runs": -1},
        {"use_xnnpack": "yes"},
        {"timeout_s": 0},
        {"remote_dir": "tmp/ofabench"},
        {"threads": 1.5},
    ],
)
def test_bad_settings_are_refused(settings: dict) -> None:
    with pytest.raises(ConfigError, match="adb settings"):
        AdbBackend(**settings)


def test_unknown_setting_lists_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match="taskset"):
        AdbBackend(cpu_mask="f0")


def test_registered_as_adb() -> None:
    assert isinstance(get_backend("adb", serial="X"), AdbBackend)


# -- a stand-in adb on PATH ---------------------------------------------------------------------------
@pytest.fixture
def fake_adb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake ``adb`` first on PATH; returns its log (one JSON argv per line)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "adb"
    script.write_text(FAKE_ADB.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    log = tmp_path / "adb.log"
    log.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(DATA / "benchmark_model_litert.txt"))
    return log


@pytest.fixture
def tflite_file(tmp_path: Path) -> Path:
    path = tmp_path / "block.tflite"
    path.write_bytes(b"\x1c\x00\x00\x00TFL3 stand-in model")
    return path


def read_log(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_measure_pushes_benchmarks_and_removes(fake_adb: Path, tflite_file: Path) -> None:
    backend = AdbBackend(serial="0A1B2C3D", threads=2, taskset="f0", num_runs=50, warmup_runs=10)
    measurement = backend.measure(str(tflite_file), (1, 16, 8, 8), ONE_ROUND)
    assert measurement.median_ms == pytest.approx(1.180)  # the printed median
    assert measurement.mean_ms == pytest.approx(1.19661)
    assert measurement.std_ms == pytest.approx(0.061)
    assert measurement.iqr_ms == pytest.approx(1.349 * 0.061)
    assert (measurement.n, measurement.rounds, measurement.backend) == (824, 1, "adb")
    assert measurement.info["statistic"] == "median"
    assert measurement.info["device"] == "Pixel 7 Android 14"
    assert measurement.info["init_ms"] == pytest.approx(12.371)
    json.dumps(measurement.to_dict())

    log = read_log(fake_adb)
    assert log[0] == ["devices"]  # availability lists every device
    assert all(c[:2] == ["-s", "0A1B2C3D"] for c in log[1:]), "the rest goes to the serial"
    calls = [c[2:] for c in log[1:]]
    kinds = [c[0] if c[0] != "shell" else f"shell {c[1]}" for c in calls]
    push, bench, remove = kinds.index("push"), kinds.index("shell taskset"), kinds.index("shell rm")
    assert push < bench < remove
    remote = calls[push][2]
    assert remote.startswith("/data/local/tmp/ofabench/ofabench_") and remote.endswith(".tflite")
    assert calls[push][1] == str(tflite_file)
    assert calls[bench] == [
        "shell", "taskset", "f0", "/data/local/tmp/benchmark_model", f"--graph={remote}",
        "--num_threads=2", "--warmup_runs=10", "--num_runs=50", "--use_xnnpack=true",
    ]  # fmt: skip
    assert calls[remove] == ["shell", "rm", "-f", remote]
    assert tflite_file.exists(), "a caller's .tflite file must not be deleted"


def test_reports_the_mean_when_no_median_is_printed(
    fake_adb: Path, tflite_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(DATA / "benchmark_model_tf2.txt"))
    measurement = AdbBackend().measure(tflite_file, (1, 3, 8, 8), ONE_ROUND)
    assert measurement.median_ms == pytest.approx(13.1543)
    assert measurement.info["statistic"] == "avg"


def test_measure_settings_fill_in_runs_and_rounds_repeat_until_stable(
    fake_adb: Path, tflite_file: Path
) -> None:
    settings = MeasureSettings(warmup=3, repeats=7, max_rounds=3, tolerance=0.05)
    measurement = AdbBackend(cooldown_s=0.2).measure(tflite_file, (1, 3, 8, 8), settings)
    benches = [c for c in read_log(fake_adb) if "/data/local/tmp/benchmark_model" in c]
    assert len(benches) == 2 and measurement.rounds == 2 and measurement.stable
    assert "--warmup_runs=3" in benches[0] and "--num_runs=7" in benches[0]


def test_cooldown_separates_invocations(fake_adb: Path, tflite_file: Path) -> None:
    backend = AdbBackend(cooldown_s=0.5)
    prepared = backend.prepare(tflite_file, (1, 3, 8, 8))
    try:
        backend.run_benchmark(prepared, 5, 0)
        start = time.monotonic()
        backend.run_benchmark(prepared, 5, 0)
        assert time.monotonic() - start >= 0.5
    finally:
        backend.close(prepared)


def test_measure_round_is_one_invocation_with_its_printed_statistics(
    fake_adb: Path, tflite_file: Path
) -> None:
    backend = AdbBackend()
    prepared = backend.prepare(tflite_file, (1, 3, 8, 8))
    try:
        round_ = backend.measure_round(prepared, MeasureSettings(warmup=3, repeats=50), 0)
    finally:
        backend.close(prepared)
    assert len(prepared.runs) == 1  # one benchmark_model invocation per round
    assert round_.n == 824 and round_.median_ms == pytest.approx(1.180)
    assert round_.info["statistic"] == "median"


def test_measure_converts_a_module_with_the_tflite_writer(
    fake_adb: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ofabench.devices import adb_backend

    seen = {}

    def fake_writer(model: object, shape: tuple[int, ...]) -> bytes:
        seen["shape"] = shape
        return b"TFL3"

    monkeypatch.setattr(adb_backend, "_tflite_bytes", fake_writer)
    measurement = AdbBackend().measure(object(), (1, 16, 8, 8), ONE_ROUND)
    assert seen["shape"] == (1, 16, 8, 8) and measurement.median_ms > 0
    push = next(c for c in read_log(fake_adb) if c[0] == "push")
    assert not Path(push[1]).exists(), "the temporary .tflite must be removed"


def test_measure_pushes_what_the_tflite_writer_wrote(
    fake_adb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ai_edge_litert", reason="the TFLite writer needs ai-edge-litert's schema")
    from ofabench.devices.tflite_writer import module_to_tflite
    from ofabench.space import LayerGeom
    from ofabench.supernet.static import MBConv

    kept = tmp_path / "pushed.tflite"
    monkeypatch.setenv("FAKE_ADB_KEEP", str(kept))
    block = MBConv(LayerGeom("mbconv", 8, 16, 16, mid=48, kernel=3, se=True, act="h_swish")).eval()
    AdbBackend().measure(block, (1, 16, 8, 8), ONE_ROUND)
    assert kept.read_bytes()[4:8] == b"TFL3"  # the flatbuffer file identifier
    assert len(kept.read_bytes()) == len(module_to_tflite(block, (1, 16, 8, 8)))


def test_failed_benchmark_is_an_error_and_still_cleans_up(
    fake_adb: Path, tflite_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(DATA / "benchmark_model_failed.txt"))
    monkeypatch.setenv("FAKE_ADB_EXIT", "1")
    with pytest.raises(BackendError, match="exit code 1.*Failed to mmap model"):
        AdbBackend().measure(tflite_file, (1, 3, 8, 8), ONE_ROUND)
    assert read_log(fake_adb)[-1][:2] == ["shell", "rm"]


def test_missing_tflite_path_is_an_error(fake_adb: Path, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="not an existing .tflite"):
        AdbBackend().measure(str(tmp_path / "nope.tflite"), (1, 3, 8, 8), ONE_ROUND)


# -- availability and time-outs ----------------------------------------------------------------------
def test_available_with_a_device(fake_adb: Path) -> None:
    assert AdbBackend.is_available()
    assert AdbBackend(serial="0A1B2C3D").is_available()
    assert read_log(fake_adb)[-1] == ["devices"]


def test_no_device_is_unavailable_with_the_reason(
    fake_adb: Path, tflite_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ADB_DEVICES", "")
    status = AdbBackend().is_available()
    assert not status and status.reason == NO_DEVICE
    with pytest.raises(BackendError, match="no adb device is connected"):
        AdbBackend().measure(tflite_file, (1, 3, 8, 8), ONE_ROUND)
    assert all(c == ["devices"] for c in read_log(fake_adb)), "nothing may run without a device"


def test_other_device_states_and_serials(fake_adb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_ADB_DEVICES", "R58M\tunauthorized")
    assert "accept the USB debugging prompt" in AdbBackend().is_available().reason
    monkeypatch.setenv("FAKE_ADB_DEVICES", "0A1B2C3D\tdevice")
    status = AdbBackend(serial="R58M").is_available()
    assert not status and "'R58M' is not connected" in status.reason


def test_no_adb_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert AdbBackend.is_available().reason == NO_ADB
    assert "not found" in AdbBackend(adb="/opt/none/adb").is_available().reason


def test_a_hanging_adb_times_out(
    fake_adb: Path, tflite_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ADB_HANG", "60")
    backend = AdbBackend(timeout_s=1.5)
    start = time.monotonic()
    with pytest.raises(BackendError, match=r"timed out after 1.5 s") as error:
        backend.measure(tflite_file, (1, 3, 8, 8), ONE_ROUND)
    assert time.monotonic() - start < 10
    assert "adb shell /data/local/tmp/benchmark_model --graph=" in str(error.value)
