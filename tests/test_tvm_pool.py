"""TVM's compile pool (issue 15, part 4): ops compiled ahead in spawned worker processes into a
library cache, then timed from the loaded libraries. A profile made so has the in-line profile's
form and agrees with it within noise; a second run compiles nothing; an op that fails to compile
fails alone (the others measured, its reason recorded)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("tvm", reason="apache-tvm is not installed (pip install 'ofabench[tvm]')")

from ofabench.devices import tvm_build  # noqa: E402
from ofabench.devices.base import MeasureSettings  # noqa: E402
from ofabench.devices.profiles import DeviceProfile  # noqa: E402
from ofabench.devices.tvm_backend import TVMBackend  # noqa: E402
from ofabench.errors import BackendError, ConfigError  # noqa: E402
from ofabench.latency.ops import build_op_module  # noqa: E402
from ofabench.latency.probe import ProbeSettings  # noqa: E402
from ofabench.latency.profiler import ops_at, profile_device  # noqa: E402
from ofabench.latency.table import LatencyTable  # noqa: E402
from ofabench.space import SpaceSpec  # noqa: E402

from .conftest import TINY_SPACE as STUDY_SPACE  # noqa: E402

TINY_SPACE = {  # the study tests' tiny space with one choice per dimension: few ops to compile
    **STUDY_SPACE,
    "name": "tiny_tvm_pool",
    "kernel_choices": [3],
    "expand_choices": [3],
    "depth_choices": [1],
    "resolutions": [16],
    "max_depth": 1,
}
QUICK = MeasureSettings(warmup=2, repeats=5, max_rounds=2, tolerance=0.2)
NO_PROBE = ProbeSettings(enabled=False)  # the probe is compiled in-line either way


def device(cache: Path | None, **settings: Any) -> DeviceProfile:
    base = {"target": {"kind": "llvm"}, "threads": 1}
    if cache is not None:
        base["build_cache"] = str(cache)
    return DeviceProfile("cpu-tvm-pool-test", "tvm", {**base, **settings})


def profile(out: Path, cache: Path | None, **settings: Any) -> LatencyTable:
    profile_device(
        device(cache, **settings), SpaceSpec.from_dict(TINY_SPACE), out_path=out,
        settings=QUICK, probe=NO_PROBE, remeasure_unstable=False, calibrate=2,
    )  # fmt: skip
    return LatencyTable.load(out)


def compile_log(table: LatencyTable) -> list[dict[str, Any]]:
    return table.provenance["profiling"]["runs"][-1].get("compile", [])


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny space profiled in-line, then through the pool (2 workers) into a fresh cache."""
    if not TVMBackend.is_available():
        pytest.skip(f"tvm is not available: {TVMBackend.is_available().reason}")
    root = tmp_path_factory.mktemp("tvm_pool")
    inline = profile(root / "inline.json", None, compile_pool=False)
    pooled = profile(root / "pool.json", root / "cache", compile_workers=2)
    return {"root": root, "inline": inline, "pool": pooled}


def test_pool_compiles_every_op_into_the_cache(tables: dict[str, Any]) -> None:
    n_ops = len(ops_at(SpaceSpec.from_dict(TINY_SPACE), [16]))
    ops, subnets = compile_log(tables["pool"])
    assert (ops["models"], ops["compiled"], ops["cached"], ops["failed"]) == ("ops", n_ops, 0, {})
    # the calibration subnets (one distinct arch here: every choice of the tiny space is single)
    assert (subnets["models"], subnets["compiled"], subnets["failed"]) == ("subnets", 1, {})
    assert ops["workers"] == 2 and ops["cache"] == subnets["cache"]
    libraries = list(Path(ops["cache"]).glob("*.so"))
    assert len(libraries) == n_ops + 1
    identity = json.loads((Path(ops["cache"]) / "identity.json").read_text())
    assert identity["tvm"] and "llvm" in identity["target"]
    assert compile_log(tables["inline"]) == []  # compile_pool: false compiles in-line


def test_pool_profile_has_the_inline_form_and_agrees_within_noise(tables: dict[str, Any]) -> None:
    inline, pooled = tables["inline"], tables["pool"]
    assert set(pooled) == set(inline) and len(pooled) > 0
    inline_data, pool_data = inline.to_dict(), pooled.to_dict()
    assert set(pool_data) == set(inline_data)
    assert set(pool_data["provenance"]["profiling"]) == set(inline_data["provenance"]["profiling"])
    assert (
        pool_data["provenance"]["profiling"]["backend_info"]
        == inline_data["provenance"]["profiling"]["backend_info"]
    )
    ratios = [pooled[key].mean_ms / inline[key].mean_ms for key in inline]
    assert all(pooled[key].count > 0 and inline[key].count > 0 for key in inline)  # measured
    # microsecond ops on a loaded machine: loose bounds; the same compiled code either way (a
    # run beside the study's two evaluation threads and the rest of the suite gave 0.595)
    assert 0.5 < statistics.median(ratios) < 2.0, ratios
    assert all(0.2 < r < 5.0 for r in ratios), ratios


def test_library_computes_what_the_op_computes(tables: dict[str, Any]) -> None:
    op = next(o for o in ops_at(SpaceSpec.from_dict(TINY_SPACE), [16]).values() if o.se)
    log = compile_log(tables["pool"])[0]
    backend = TVMBackend(
        threads=1, target={"kind": "llvm"}, build_cache=str(tables["root"] / "cache")
    )
    module, shape = build_op_module(op)
    runnable = tvm_build.load_library(
        backend, tvm_build.library_path(Path(log["cache"]), tvm_build.op_model(op.key)), shape
    )
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(runnable(x), want, rtol=1e-4, atol=1e-5)


def test_second_run_reuses_the_cache(
    tables: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tables["root"] / "cache"
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*.so")}
    pools: list[int] = []
    real_pool = tvm_build.run_pool
    monkeypatch.setattr(tvm_build, "run_pool", lambda *a: pools.append(1) or real_pool(*a))
    again = profile(tables["root"] / "again.json", cache)
    ops, subnets = compile_log(again)
    assert (ops["compiled"], subnets["compiled"], pools) == (0, 0, [])
    assert ops["cached"] + subnets["cached"] == len(before)
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.so")} == before
    assert set(again) == set(tables["pool"])


def test_an_op_that_fails_to_compile_fails_alone(
    tables: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = next(iter(ops_at(SpaceSpec.from_dict(TINY_SPACE), [16])))
    real_pool = tvm_build.run_pool

    def pool(tasks: list[tvm_build.BuildTask], workers: int) -> Any:
        bad = {**tasks[0].settings, "target": {"kind": "no-such-target"}}
        # the victim's worker gets a target TVM cannot make
        tasks = [dataclasses.replace(t, settings=bad) if t.key == victim else t for t in tasks]
        return real_pool(tasks, workers)

    monkeypatch.setattr(tvm_build, "run_pool", pool)
    cache = tables["root"] / "cache-broken"  # the others cached: only the victim is compiled
    shutil.copytree(tables["root"] / "cache", cache)
    cached_dir = cache / Path(compile_log(tables["pool"])[0]["cache"]).name
    tvm_build.library_path(cached_dir, tvm_build.op_model(victim)).unlink()
    out = tables["root"] / "broken.json"
    with pytest.raises(BackendError) as info:
        profile(out, cache, compile_workers=1)
    message = str(info.value)
    assert "\n" not in message and f"failed to compile op {victim}" in message
    assert "no-such-target" in message and "rerun to resume" in message
    table = LatencyTable.load(out)
    assert set(table) == set(tables["inline"]) - {victim}  # every other op measured
    (log,) = compile_log(table)
    assert set(log["failed"]) == {victim} and "no-such-target" in log["failed"][victim]
    assert (log["compiled"], log["cached"]) == (0, len(tables["inline"]) - 1)


@pytest.mark.parametrize(
    "settings", [{"compile_pool": "yes"}, {"compile_workers": 0}, {"build_cache": 3}]
)
def test_bad_pool_settings_are_one_line_errors(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        TVMBackend(**settings)
    assert "\n" not in str(info.value) and next(iter(settings)) in str(info.value)


def test_remote_or_tuned_devices_compile_inline() -> None:
    assert tvm_build.pool_applies(TVMBackend())
    assert not tvm_build.pool_applies(TVMBackend(compile_pool=False))
    assert not tvm_build.pool_applies(TVMBackend(tune_trials=8))
    assert not tvm_build.pool_applies(TVMBackend(rpc={"host": "127.0.0.1", "port": 9090}))


def test_validation_times_subnets_compiled_ahead(
    tables: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Validation compiles its subnets in the pool before timing any (a retried round loads the
    library, it does not compile again): with the in-line compiler broken, a validation whose
    subnet the profile's calibration already put in the cache still measures it."""
    from ofabench.latency.validate import validate_device

    def no_inline_compile(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("compiled in-line")

    monkeypatch.setattr(TVMBackend, "compile", no_inline_compile)
    cache = tables["root"] / "cache"
    result = validate_device(
        device(cache), SpaceSpec.from_dict(TINY_SPACE), table=tables["root"] / "pool.json",
        n=2, settings=QUICK, speed_check="off", out_dir=tmp_path / "v",
    )  # fmt: skip
    assert result.n_measured_now == 2 and result.metrics["plain"].n == 2
    with pytest.raises(BackendError, match="compiled in-line"):
        validate_device(
            device(None, compile_pool=False), SpaceSpec.from_dict(TINY_SPACE),
            table=tables["root"] / "pool.json", n=2, settings=QUICK, speed_check="off",
            out_dir=tmp_path / "v2",
        )  # fmt: skip
