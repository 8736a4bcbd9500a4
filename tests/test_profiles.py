"""Device profiles (devices/*.yaml): the shipped ones, strict validation, lookup order, and the
``ofabench devices`` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ofabench.cli import main
from ofabench.devices.profiles import (
    ALLOWED_KEYS,
    ENV_DEVICES_DIR,
    DeviceProfile,
    list_profiles,
    load_profile,
    profile_dirs,
)
from ofabench.errors import BackendError, ConfigError

REPO_DEVICES = Path(__file__).resolve().parents[1] / "devices"
OURS = {"cpu-torch", "cpu-onnxruntime", "cpu-litert", "gpu-torch"}


@pytest.fixture
def devices_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An extra profile folder, searched first."""
    folder = tmp_path / "devices"
    folder.mkdir()
    monkeypatch.setenv(ENV_DEVICES_DIR, str(folder))
    return folder


def test_shipped_profiles_load() -> None:
    names = list_profiles()
    assert set(names) >= OURS
    for name in names:  # every shipped profile, ours or another's, must parse
        profile = load_profile(name)
        assert profile.name == name and profile.backend and profile.description


def test_shipped_profile_contents() -> None:
    assert load_profile("cpu-torch").backend == "torch"
    assert load_profile("cpu-torch").settings["threads"] == 1
    assert load_profile("cpu-onnxruntime").settings["intra_op_threads"] == 1
    litert = load_profile("cpu-litert")
    assert litert.backend == "litert"
    assert dict(litert.settings) == {"threads": 1, "use_xnnpack": True}
    assert load_profile("gpu-torch").settings["device"] == "cuda"


def test_shipped_profiles_have_a_comment_header() -> None:
    for name in OURS:
        assert (REPO_DEVICES / f"{name}.yaml").read_text().startswith("#")


def test_backend_instance_is_configured() -> None:
    backend = load_profile("cpu-torch").backend_instance()
    assert backend.name == "torch" and backend.settings == {"device": "cpu", "threads": 1}


def test_load_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text('backend: "null"\nsettings: {latency_ms: 2}\n')
    profile = load_profile(path)
    assert profile == DeviceProfile("mine", "null", {"latency_ms": 2})
    assert profile.availability()


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_profile(tmp_path / "nope.yaml")


def test_unknown_device_lists_known_names() -> None:
    with pytest.raises(ConfigError, match="unknown device 'no-such-device'") as info:
        load_profile("no-such-device")
    for name in OURS:
        assert name in str(info.value)


def test_env_folder_comes_first(devices_dir: Path) -> None:
    (devices_dir / "cpu-torch.yaml").write_text("backend: torch\nsettings: {threads: 2}\n")
    (devices_dir / "extra.yml").write_text("backend: 'null'\n")
    assert profile_dirs()[0] == devices_dir
    assert load_profile("cpu-torch").settings["threads"] == 2
    assert "extra" in list_profiles() and "gpu-torch" in list_profiles()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("backend: torch\nthreads: 1\n", r"unknown key\(s\) \['threads'\]; allowed: "),
        ("settings: {threads: 1}\n", r"lacks required key\(s\) \['backend'\]"),
        ("backend: 3\n", "'backend' must be a backend name"),
        ("backend: null\n", "'backend' is empty.*quote"),
        ("backend: torch\nsettings: [1, 2]\n", "'settings' must be a mapping"),
        ("backend: torch\ntags: cpu\n", "'tags' must be a list of strings"),
        ("backend: torch\ndescription: [x]\n", "'description' must be a string"),
        ("backend: torch\nname: other\n", "named 'other' but its file is 'bad'"),
        ("- backend: torch\n", "must be a mapping"),
        ("backend: [unclosed\n", "cannot read device profile"),
    ],
)
def test_bad_profiles_are_refused(devices_dir: Path, text: str, message: str) -> None:
    (devices_dir / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_profile("bad")


def test_unknown_keys_error_lists_allowed_keys(devices_dir: Path) -> None:
    (devices_dir / "bad.yaml").write_text("backend: torch\nthreads: 1\n")
    with pytest.raises(ConfigError) as info:
        load_profile("bad")
    for key in ALLOWED_KEYS:
        assert key in str(info.value)


def test_bad_settings_surface_from_the_backend(devices_dir: Path) -> None:
    (devices_dir / "bad.yaml").write_text("backend: torch\nsettings: {thread: 1}\n")
    profile = load_profile("bad")
    with pytest.raises(ConfigError, match=r"does not take setting\(s\) \['thread'\]"):
        profile.backend_instance()
    status = profile.availability()
    assert not status and "thread" in status.reason


def test_unknown_backend_reads_as_unavailable(devices_dir: Path) -> None:
    (devices_dir / "odd.yaml").write_text("backend: quantum\n")
    with pytest.raises(BackendError, match="unknown backend 'quantum'"):
        load_profile("odd").backend_instance()
    status = load_profile("odd").availability()
    assert not status and "unknown backend 'quantum'" in status.reason


# -- ofabench devices ---------------------------------------------------------------------------------
def _devices_json(capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    assert main(["devices", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_devices_command_lists_availability(capsys: pytest.CaptureFixture[str]) -> None:
    rows = {row["name"]: row for row in _devices_json(capsys)["devices"]}
    assert set(rows) >= OURS
    assert rows["cpu-torch"]["available"] is True and rows["cpu-torch"]["backend"] == "torch"
    if not torch.cuda.is_available():
        gpu = rows["gpu-torch"]
        assert gpu["available"] is False
        assert gpu["reason"] == (
            "CUDA is not available on this machine (torch.cuda.is_available() is False)"
        )
    for row in rows.values():
        assert isinstance(row["available"], bool)
        assert row["available"] or row["reason"]


def test_devices_command_survives_broken_profiles(
    devices_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (devices_dir / "broken.yaml").write_text("backend: torch\nbogus: 1\n")
    (devices_dir / "missing-module.yaml").write_text("backend: quantum\n")
    rows = {row["name"]: row for row in _devices_json(capsys)["devices"]}
    assert not rows["broken"]["available"] and "bogus" in rows["broken"]["reason"]
    assert not rows["missing-module"]["available"]


def test_devices_command_lists_backends(capsys: pytest.CaptureFixture[str]) -> None:
    rows = {row["name"]: row for row in _devices_json(capsys, "--backends")["backends"]}
    assert {"null", "torch", "onnxruntime", "litert", "tvm", "adb"} <= set(rows)
    assert rows["torch"]["available"] and rows["null"]["available"]
    for row in rows.values():
        assert row["available"] or row["reason"]


def test_devices_command_human_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert " yes " in lines["cpu-torch"]
    if not torch.cuda.is_available():
        assert "CUDA is not available" in lines["gpu-torch"]
