"""Remote devices for real: a TVM ``rpc_server`` and an OpenSSH server, both started by these tests
on 127.0.0.1, profiled through; the failure modes (wrong port, refused key, missing Python or
runtime, a hang) end in bounded time with one line naming the device, keeping what was measured;
``DeviceProfile.open`` asks a device once per run; bad remote profiles exit 1 with one line."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import yaml

from ofabench.cli import main
from ofabench.devices.base import Availability, MeasureSettings
from ofabench.devices.null import NullBackend
from ofabench.devices.profiles import DeviceProfile, load_profile, profile_from_dict
from ofabench.devices.registry import register_backend
from ofabench.errors import BackendError, ConfigError, DeviceError
from ofabench.latency.probe import ProbeSettings
from ofabench.latency.profiler import measure_op, measure_subnet, profile_device
from ofabench.latency.table import LatencyTable, resolution_ops
from ofabench.space import get_space
from ofabench.testing import BackendContract

pytestmark = pytest.mark.usefixtures("one_thread")

SPACE = "small32_w0.5"
ROUNDS = MeasureSettings(warmup=3, repeats=15, max_rounds=3, tolerance=0.1)
SSHD = Path("/usr/sbin/sshd")
SERVER_START_S = 120.0  # importing TVM in a fresh rpc_server takes ~10 s on a busy 2-core box
# A quick remote measurement (conversion or compilation, copying, a fresh runner) takes seconds
# idle; wall time at nice 19 beside a training run at high priority reached 113 s for TVM.
QUICK_REMOTE_S = 240.0


# -- servers ------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until something accepts connections on ``port``; fail with the server's log if it dies."""
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        time.sleep(0.2)
    pytest.fail(f"nothing listened on port {port} within {SERVER_START_S:g} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Kill the server and every process it started (its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def start_server(argv: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    try:
        wait_for_port(port, process, log)
    except BaseException:
        stop(process)
        raise
    return process


@pytest.fixture(scope="module")
def rpc_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real ``python -m tvm.exec.rpc_server`` on 127.0.0.1."""
    pytest.importorskip("tvm", reason="apache-tvm is not installed (pip install 'ofabench[tvm]')")
    port = free_port()
    argv = [sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1",
            "--port", str(port), "--port-end", str(port + 1)]  # fmt: skip
    process = start_server(argv, port, tmp_path_factory.mktemp("rpc") / "server.log")
    yield port
    stop(process)


@dataclass(frozen=True)
class SshServer:
    port: int
    user: str
    key: Path  # the client's private key, authorised
    other_key: Path  # a key the server does not know
    folder: Path


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def sshd_config(folder: Path, port: int) -> Path:
    config = folder / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nStrictModes no\nUsePAM no\n"
        f"PidFile {folder / 'sshd.pid'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
    )
    return config


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """A real OpenSSH server on 127.0.0.1 with a host key and a client key made in a temp dir."""
    if not SSHD.exists():
        pytest.fail("OpenSSH's server is not installed: apt-get install openssh-server (.ci/setup)")
    folder = tmp_path_factory.mktemp("sshd")
    keygen(folder / "host_key")
    shutil.copyfile(keygen(folder / "client_key").with_suffix(".pub"), folder / "authorized_keys")
    if os.geteuid() == 0:  # sshd's privilege separation folder (made by the service normally)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    port = free_port()
    config = sshd_config(folder, port)
    process = start_server([str(SSHD), "-D", "-e", "-f", str(config)], port, folder / "sshd.log")
    yield SshServer(port, getpass.getuser(), folder / "client_key", keygen(folder / "stranger"),
                    folder)  # fmt: skip
    stop(process)


def ssh_settings(server: SshServer, **overrides: Any) -> dict[str, Any]:
    """Settings for the test server: this interpreter (it has onnxruntime) as the board's."""
    return {
        "host": "127.0.0.1",
        "port": server.port,
        "user": server.user,
        "identity_file": str(server.key),
        "python": sys.executable,
        "ssh_options": [
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "LogLevel=ERROR",
        ],  # fmt: skip
        "connect_timeout_s": 10,
        "timeout_s": 180,
        **overrides,
    }


def device(name: str, backend: str, settings: dict[str, Any]) -> DeviceProfile:
    return profile_from_dict({"backend": backend, "settings": settings}, default_name=name)


def tiny_ops(n: int) -> list[Any]:
    """The first ``n`` ops of the small space at 24 px (the stem, then the first block)."""
    return resolution_ops(get_space(SPACE), 24).all_ops()[:n]


# -- the contract for both ------------------------------------------------------------------------
class TestSshContract(BackendContract):
    backend_name = "ssh"
    quick_seconds: ClassVar[float] = QUICK_REMOTE_S

    @pytest.fixture(autouse=True)
    def _server(self, sshd: SshServer) -> None:
        self.settings = ssh_settings(sshd)


class TestTvmRpcContract(BackendContract):
    backend_name = "tvm"
    quick_seconds: ClassVar[float] = QUICK_REMOTE_S

    @pytest.fixture(autouse=True)
    def _server(self, rpc_port: int) -> None:
        self.settings = {"threads": 1, "rpc": {"host": "127.0.0.1", "port": rpc_port}}


# -- figures agree with local runs ----------------------------------------------------------------
def assert_close(remote_ms: float, local_ms: float, what: str) -> None:
    """Within a factor of 2.5: the same CPU, measured minutes apart on a busy machine."""
    ratio = remote_ms / local_ms
    assert 1 / 2.5 < ratio < 2.5, f"{what}: remote {remote_ms:.4g} ms, local {local_ms:.4g} ms"


def compare_with_local(remote: DeviceProfile, local: DeviceProfile) -> dict[str, list[float]]:
    """Two ops and the smallest subnet measured through the remote device and locally."""
    space = get_space(SPACE)
    remote_backend, local_backend = remote.open(), local.open()
    figures: dict[str, list[float]] = {}
    for op in tiny_ops(2):
        figures[op.key] = [measure_op(b, op, ROUNDS).median_ms
                           for b in (remote_backend, local_backend)]  # fmt: skip
    arch = space.min_arch()
    figures["subnet"] = [measure_subnet(b, space, arch, ROUNDS).median_ms
                         for b in (remote_backend, local_backend)]  # fmt: skip
    for what, (remote_ms, local_ms) in figures.items():
        assert_close(remote_ms, local_ms, what)
    return figures


def test_tvm_rpc_profiles_ops_and_a_subnet_like_local_tvm(rpc_port: int) -> None:
    rpc = {"host": "127.0.0.1", "port": rpc_port}
    remote = device("rpc-board", "tvm", {"threads": 1, "rpc": rpc})
    figures = compare_with_local(remote, device("local-tvm", "tvm", {"threads": 1}))
    assert remote.open().info()["device"] == f"rpc:127.0.0.1:{rpc_port}"
    print("tvm rpc vs local (ms):", json.dumps(figures))


def test_ssh_profiles_ops_and_a_subnet_like_local_onnxruntime(sshd: SshServer) -> None:
    board = device("ssh-board", "ssh", ssh_settings(sshd, cpus=[0]))
    local = device("local-ort", "onnxruntime", {"intra_op_threads": 1})
    figures = compare_with_local(board, local)
    backend = board.open()
    assert backend.info()["runtime_version"] and backend.info()["python"]
    print("ssh vs local onnxruntime (ms):", json.dumps(figures))


def test_ssh_pins_threads_and_cpus_and_cleans_up(sshd: SshServer, tmp_path: Path) -> None:
    remote_dir = tmp_path / "board"
    remote_dir.mkdir()
    board = device("pinned", "ssh", ssh_settings(sshd, cpus=[0], threads=1,
                                                 remote_dir=str(remote_dir)))  # fmt: skip
    op = tiny_ops(1)[0]
    measurement = measure_op(board.open(), op, MeasureSettings(warmup=1, repeats=3, max_rounds=1))
    assert measurement.info["cpus"] == [0] and measurement.info["threads"] == 1
    assert list(remote_dir.iterdir()) == []  # the board's folder went with the measurement


def test_ssh_litert_runtime_times_a_tflite_model(sshd: SshServer) -> None:
    pytest.importorskip("ai_edge_litert", reason="LiteRT is not installed")
    board = device("tflite-board", "ssh", ssh_settings(sshd, runtime="litert"))
    measurement = measure_op(board.open(), tiny_ops(1)[0], MeasureSettings(1, 3, 1))
    assert measurement.median_ms > 0 and "ai-edge-litert" in measurement.info["runtime_version"]


# -- failure modes ------------------------------------------------------------------------------------
def assert_one_line_error(profile: DeviceProfile, *needles: str, within_s: float = 60) -> None:
    start = time.monotonic()
    with pytest.raises(DeviceError) as caught:
        profile.open()
    message = str(caught.value)
    assert time.monotonic() - start < within_s
    assert "\n" not in message and f"device {profile.name!r}" in message, message
    for needle in needles:
        assert needle in message, message


def test_ssh_wrong_port_says_nothing_listens(sshd: SshServer) -> None:
    settings = ssh_settings(sshd, port=free_port())
    assert_one_line_error(device("no-sshd", "ssh", settings), "check host and port")


def test_ssh_refused_key_says_which_setting(sshd: SshServer) -> None:
    settings = ssh_settings(sshd, identity_file=str(sshd.other_key))
    assert_one_line_error(device("wrong-key", "ssh", settings), "refused the key", "identity_file")


def test_ssh_missing_python_and_runtime(sshd: SshServer, tmp_path: Path) -> None:
    missing = ssh_settings(sshd, python=str(tmp_path / "no" / "python3"))
    assert_one_line_error(device("no-python", "ssh", missing), "has no Python", "set python")
    bare = tmp_path / "bare"  # a Python without onnxruntime: a fresh venv, no packages
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    settings = ssh_settings(sshd, python=str(bare / "bin" / "python"))
    assert_one_line_error(device("no-ort", "ssh", settings), "cannot import onnxruntime",
                          "pip install onnxruntime")  # fmt: skip


def hanging_python(folder: Path, after: int = 0) -> Path:
    """A 'board Python' whose calls after the first ``after`` hang (sleep 40 s)."""
    script, count = folder / "python", folder / "calls"
    script.write_text(
        f'#!/bin/sh\nn=$(($(cat "{count}" 2>/dev/null || echo 0) + 1))\necho $n > "{count}"\n'
        f'[ $n -gt {after} ] && sleep 40\nexec "{sys.executable}" "$@"\n'
    )
    script.chmod(0o755)
    return script


def test_ssh_hang_past_a_tiny_timeout_is_one_line(sshd: SshServer, tmp_path: Path) -> None:
    settings = ssh_settings(sshd, python=str(hanging_python(tmp_path)), timeout_s=2)
    assert_one_line_error(device("frozen", "ssh", settings), "no answer within timeout_s=2 s",
                          "raise timeout_s", within_s=30)  # fmt: skip


def test_ssh_hang_mid_run_keeps_what_was_measured(sshd: SshServer, tmp_path: Path) -> None:
    # calls: the availability probe, two ops (one round each), then the third op hangs
    settings = ssh_settings(sshd, python=str(hanging_python(tmp_path, after=3)), timeout_s=15)
    board = device("hangs", "ssh", settings)
    out = tmp_path / "table.json"
    space = get_space(SPACE).restrict(kernel_choices=(3,), expand_choices=(3,),
                                      depth_choices=(2,), resolutions=(24,))  # fmt: skip
    start = time.monotonic()
    with pytest.raises(BackendError) as caught:
        profile_device(board, space, out_path=out, settings=MeasureSettings(1, 3, 1),
                       probe=ProbeSettings(enabled=False))  # fmt: skip
    message = str(caught.value)
    assert time.monotonic() - start < 120
    assert "\n" not in message and "device 'hangs'" in message and "timeout_s=15" in message
    assert "the 2 entries so far are saved" in message, message
    assert len(LatencyTable.load(out)) == 2


# -- bad input ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("backend", "settings", "needle"),
    [
        ("ssh", {"port": 22}, "host is missing"),
        ("ssh", {"host": "board"}, "port is missing"),
        ("tvm", {"rpc": {"port": 9090}}, "missing ['host']"),
        ("tvm", {"rpc": {"host": "board"}}, "missing ['port']"),
    ],
)
def test_remote_profile_without_host_or_port_exits_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str, settings: dict, needle: str
) -> None:
    path = tmp_path / "bad-remote.yaml"
    path.write_text(yaml.safe_dump({"backend": backend, "settings": settings}))
    out = tmp_path / "table.json"
    assert main(["profile", "--device", str(path), "--space", SPACE, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and str(path) in err, err
    assert not out.exists()
    with pytest.raises(ConfigError):
        load_profile(path).open()


def test_example_profiles_are_listed_as_not_reachable() -> None:
    from ofabench.commands.devices import device_rows

    rows = {row["name"]: row for row in device_rows()}
    ssh_row, rpc_row = rows["board-ssh-example"], rows["tvm-rpc-example"]
    assert not ssh_row["available"] and "cannot be resolved" in ssh_row["reason"]
    assert not rpc_row["available"] and "not reachable" in rpc_row["reason"]
    assert "rpc_server" in rpc_row["reason"]


# -- one availability check per run ------------------------------------------------------------------
@register_backend
class CountingBackend(NullBackend):
    """Counts the availability checks of its instances."""

    name = "counting-test"
    checks: ClassVar[int] = 0

    @classmethod
    def availability(cls) -> Availability:
        CountingBackend.checks += 1
        return Availability(True)


def test_open_checks_availability_once_per_run() -> None:
    CountingBackend.checks = 0
    backend = device("counted", "counting-test", {}).open()
    assert backend.device_name == "counted"
    for _ in range(3):
        backend.measure(torch.nn.Linear(4, 4), (1, 4), MeasureSettings(0, 2, 1))
    assert CountingBackend.checks == 1
