"""Latency lookup tables: OFA key strings, JSON and OFA-YAML I/O, and the LatencyModel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from ofabench.errors import InvalidArchError, LatencyTableError, OfabenchError
from ofabench.latency import (
    LatencyEntry,
    LatencyModel,
    LatencyTable,
    OpSpec,
    arch_ops,
    resolution_ops,
)
from ofabench.space import ArchBatch, ArchConfig, get_space

NOTE10 = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ofa_reference" / "note10_lut"
)
NOTE10_RESOLUTIONS = (160, 176, 192, 208, 224)
needs_note10 = pytest.mark.skipif(
    not NOTE10.is_dir(), reason=f"OFA Note10 lookup tables not found at {NOTE10}"
)

OFA_KEYS = {
    "stem": "Conv-input:224x224x3-output:112x112x24",
    "mbconv": "expanded_conv-input:112x112x24-output:56x56x32-expand:144-kernel:3-stride:2-idskip:0-se:0-hs:0",
    "final_expand": "Conv_1-input:7x7x192-output:7x7x1152",
    "pool": "AvgPool2D-input:7x7x1152-output:1x1x1152",
    "feature_mix": "Conv_2-input:1x1x1152-output:1x1x1536",
    "classifier": "Logits-input:1x1x1536-output:1000",
}
FIRST_BLOCK_224 = "expanded_conv-input:112x112x24-output:112x112x24-expand:24-kernel:3-stride:1-idskip:1-se:0-hs:0"

# The smallest w1.2 subnet at 192, written out by hand (not through SpaceSpec.layers).
MIN_ARCH_192_KEYS = [
    "Conv-input:192x192x3-output:96x96x24",
    "expanded_conv-input:96x96x24-output:96x96x24-expand:24-kernel:3-stride:1-idskip:1-se:0-hs:0",
    "expanded_conv-input:96x96x24-output:48x48x32-expand:72-kernel:3-stride:2-idskip:0-se:0-hs:0",
    "expanded_conv-input:48x48x32-output:48x48x32-expand:96-kernel:3-stride:1-idskip:1-se:0-hs:0",
    "expanded_conv-input:48x48x32-output:24x24x48-expand:96-kernel:3-stride:2-idskip:0-se:1-hs:0",
    "expanded_conv-input:24x24x48-output:24x24x48-expand:144-kernel:3-stride:1-idskip:1-se:1-hs:0",
    "expanded_conv-input:24x24x48-output:12x12x96-expand:144-kernel:3-stride:2-idskip:0-se:0-hs:1",
    "expanded_conv-input:12x12x96-output:12x12x96-expand:288-kernel:3-stride:1-idskip:1-se:0-hs:1",
    "expanded_conv-input:12x12x96-output:12x12x136-expand:288-kernel:3-stride:1-idskip:0-se:1-hs:1",
    "expanded_conv-input:12x12x136-output:12x12x136-expand:408-kernel:3-stride:1-idskip:1-se:1-hs:1",
    "expanded_conv-input:12x12x136-output:6x6x192-expand:408-kernel:3-stride:2-idskip:0-se:1-hs:1",
    "expanded_conv-input:6x6x192-output:6x6x192-expand:576-kernel:3-stride:1-idskip:1-se:1-hs:1",
    "Conv_1-input:6x6x192-output:6x6x1152",
    "AvgPool2D-input:6x6x1152-output:1x1x1152",
    "Conv_2-input:1x1x1152-output:1x1x1536",
    "Logits-input:1x1x1536-output:1000",
]


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def w12():
    return get_space("ofa_mbv3_w1.2")


@pytest.fixture(scope="module")
def note10(w12) -> LatencyTable:
    if not NOTE10.is_dir():
        pytest.skip(f"OFA Note10 lookup tables not found at {NOTE10}")
    return LatencyTable.from_ofa_yaml(NOTE10, space=w12, device="note10")


def read_note10(resolution: int) -> dict:
    return yaml.safe_load((NOTE10 / f"{resolution}_lookup_table.yaml").read_text())


def synthetic_table(space, resolutions=None) -> LatencyTable:
    """A made-up but deterministic table covering ``space`` (runs without reference data)."""
    table = LatencyTable.for_space(space, device="fake", backend="null")
    rng = np.random.default_rng(0)
    for r in resolutions or space.resolutions:
        for op in resolution_ops(space, r).all_ops():
            if op not in table:
                table.add(op, LatencyEntry(float(rng.uniform(0.1, 2.0)), 0.01, 50, 0.5))
    return table


def sample_archs(space, n: int, seed: int = 0) -> list[ArchConfig]:
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


# -- keys ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(OFA_KEYS))
def test_ofa_key_parses_and_renders_back(kind):
    spec = OpSpec.parse(OFA_KEYS[kind])
    assert spec.kind == kind
    assert spec.key == OFA_KEYS[kind] == str(spec)


def _opspecs():
    dims = st.integers(1, 512)
    plain = st.builds(
        lambda kind, a, b, c, d: OpSpec(kind, a, b, 1 if kind == "classifier" else c, d),
        st.sampled_from(["stem", "final_expand", "pool", "feature_mix", "classifier"]),
        dims,
        dims,
        dims,
        dims,
    )
    mbconv = st.builds(
        OpSpec,
        st.just("mbconv"),
        dims,
        dims,
        dims,
        dims,
        mid=dims,
        kernel=st.sampled_from([3, 5, 7]),
        stride=st.sampled_from([1, 2]),
        residual=st.booleans(),
        se=st.booleans(),
        h_swish=st.booleans(),
    )
    return plain | mbconv


@given(_opspecs())
def test_opspec_round_trips_through_its_key(spec):
    assert OpSpec.parse(spec.key) == spec


def test_layers_of_w12_render_to_ofa_keys(w12):
    keys = [op.key for op in arch_ops(w12, w12.uniform(3, 6, 4, 224))]
    assert keys[0] == OFA_KEYS["stem"]
    assert keys[1] == FIRST_BLOCK_224
    assert keys[2] == OFA_KEYS["mbconv"]
    assert keys[-4:] == [OFA_KEYS[k] for k in ("final_expand", "pool", "feature_mix", "classifier")]


def test_min_arch_keys_match_hand_written_keys(w12):
    arch = w12.uniform(3, 3, 2, 192)
    assert [op.key for op in arch_ops(w12, arch)] == MIN_ARCH_192_KEYS


@pytest.mark.parametrize(
    "key",
    [
        "Relu-input:7x7x3-output:7x7x3",
        "Conv-input:224x224x3",
        "Conv-input:224x223x3-output:112x112x24",
        "Conv-input:224x224x3-output:112x112x24-kernel:3",
        "expanded_conv-input:7x7x192-output:7x7x192-expand:576-kernel:3-stride:1-idskip:1-se:1",
        "expanded_conv-input:7x7x192-output:7x7x192-expand:576-kernel:03-stride:1-idskip:1-se:1-hs:1",
        "Logits-input:1x1x1536-output:1x1x1000",
    ],
)
def test_malformed_keys_raise(key):
    with pytest.raises(LatencyTableError, match="latency key"):
        OpSpec.parse(key)


# -- Note10 import ------------------------------------------------------------------------------
@needs_note10
@pytest.mark.parametrize("resolution", NOTE10_RESOLUTIONS)
def test_note10_keys_are_exactly_the_space_ops(w12, resolution):
    file_keys = set(read_note10(resolution))
    space_keys = {op.key for op in resolution_ops(w12, resolution).all_ops()}
    assert space_keys == file_keys
    for arch in sample_archs(w12.restrict(resolutions=[resolution]), 20, seed=resolution):
        assert {op.key for op in arch_ops(w12, arch)} <= file_keys


@needs_note10
def test_note10_import_covers_the_five_resolutions(note10, w12):
    assert note10.covered_resolutions(w12) == NOTE10_RESOLUTIONS
    assert note10.device == "note10"
    assert note10.space_fingerprint == w12.fingerprint()
    assert len(note10) == len(set().union(*(read_note10(r) for r in NOTE10_RESOLUTIONS)))
    assert note10.provenance["source"]


@needs_note10
def test_predict_is_the_sum_of_the_yaml_means(note10, w12):
    model = LatencyModel(note10, w12)
    raw = read_note10(192)
    expected = sum(raw[key]["mean"] for key in MIN_ARCH_192_KEYS)
    arch = w12.uniform(3, 3, 2, 192)
    assert model.predict(arch) == pytest.approx(expected, rel=1e-12)
    assert model.predict_batch([arch])[0] == pytest.approx(expected, rel=1e-12)


@needs_note10
def test_note10_latencies_are_plausible(note10, w12):
    model = LatencyModel(note10, w12)
    largest = model.predict(w12.uniform(7, 6, 4, 224))
    smallest = model.predict(w12.uniform(3, 3, 2, 160))
    assert 5.0 < smallest < largest < 200.0
    assert model.resolutions == NOTE10_RESOLUTIONS


@needs_note10
def test_predict_equals_predict_batch_on_note10(note10, w12):
    model = LatencyModel(note10, w12)
    archs = sample_archs(w12.restrict(resolutions=model.resolutions), 50)
    batch = model.predict_batch(ArchBatch.from_archs(archs))
    assert batch.shape == (50,)
    np.testing.assert_allclose(batch, [model.predict(a) for a in archs], rtol=1e-12)


@needs_note10
def test_ofa_yaml_round_trip_is_lossless(note10, w12, tmp_path):
    written = note10.to_ofa_yaml(tmp_path)
    assert sorted(p.name for p in written) == [f"{r}_lookup_table.yaml" for r in NOTE10_RESOLUTIONS]
    for r in NOTE10_RESOLUTIONS:
        assert yaml.safe_load((tmp_path / f"{r}_lookup_table.yaml").read_text()) == read_note10(r)
    again = LatencyTable.from_ofa_yaml(tmp_path, space=w12, device="note10")
    assert dict(again.entries) == dict(note10.entries)
    assert {r: dict(e) for r, e in again.resolution_entries.items()} == {
        r: dict(e) for r, e in note10.resolution_entries.items()
    }


@needs_note10
def test_note10_import_with_the_wrong_space_raises():
    with pytest.raises(LatencyTableError, match="another search space"):
        LatencyTable.from_ofa_yaml(NOTE10 / "224_lookup_table.yaml", space="ofa_mbv3_w1.0")


# -- the model on a synthetic table (no reference data needed) ---------------------------------
def test_predict_equals_predict_batch_on_synthetic_table():
    space = get_space("ofa_mbv3_w1.0").restrict(resolutions=[160, 192, 224])
    model = LatencyModel(synthetic_table(space), space)
    archs = sample_archs(space, 50, seed=1)
    np.testing.assert_allclose(
        model.predict_batch(archs), [model.predict(a) for a in archs], rtol=1e-12
    )


def test_uncovered_resolution_raises_naming_the_covered_ones():
    space = get_space("ofa_mbv3_w1.0")
    model = LatencyModel(synthetic_table(space, resolutions=[160, 224]), space)
    assert model.resolutions == (160, 224)
    arch = space.uniform(3, 3, 2, 192)
    with pytest.raises(LatencyTableError, match=r"\[160, 224\]"):
        model.predict_batch([arch])
    with pytest.raises(LatencyTableError, match="Conv-input:192x192x3"):
        model.predict(arch)


def test_invalid_batch_raises_invalid_arch():
    space = get_space("ofa_mbv3_w1.0").restrict(resolutions=[224])
    model = LatencyModel(synthetic_table(space), space)
    good = ArchBatch.from_archs(sample_archs(space, 4))
    for field, value in (("ks", 4), ("ks", -1), ("e", 5), ("d", 1)):
        arrays = {name: getattr(good, name).copy() for name in ("ks", "e", "d", "r")}
        arrays[field][1, 0] = value
        with pytest.raises(InvalidArchError, match=field):
            model.predict_batch(ArchBatch(**arrays))


def test_fit_overhead_recovers_scale_and_overhead():
    space = get_space("small32")
    model = LatencyModel(synthetic_table(space), space)
    archs = sample_archs(space, 30, seed=2)
    measured = 1.3 * model.predict_batch(archs) + 2.0
    calibrated = model.fit_overhead(archs, measured)
    assert calibrated.scale == pytest.approx(1.3)
    assert calibrated.overhead_ms == pytest.approx(2.0)
    assert model.scale == 1.0 and model.overhead_ms == 0.0
    np.testing.assert_allclose(calibrated.predict_batch(archs), measured)
    offset_only = model.fit_overhead(archs, model.predict_batch(archs) + 0.5, fit_scale=False)
    assert offset_only.overhead_ms == pytest.approx(0.5)


def test_wrong_space_raises():
    table = synthetic_table(get_space("small32"))
    other = get_space("ofa_mbv3_w1.0")
    with pytest.raises(LatencyTableError, match="fingerprint"):
        table.check_space(other)
    with pytest.raises(LatencyTableError, match="small32"):
        LatencyModel(table, other)


# -- files --------------------------------------------------------------------------------------
def test_json_save_load_round_trip(tmp_path):
    space = get_space("small32")
    table = synthetic_table(space)
    table.add(resolution_ops(space, 32).fixed[0], LatencyEntry(9.0, 0.1, 7), resolution=32)
    path = table.save(tmp_path / "fake" / "table.json")
    assert [p.name for p in path.parent.iterdir()] == ["table.json"]  # no temp file left
    loaded = LatencyTable.load(path)
    assert loaded.to_dict() == table.to_dict()
    assert loaded.get(resolution_ops(space, 32).fixed[0], resolution=32).mean_ms == 9.0


def test_synthetic_ofa_yaml_round_trip(tmp_path):
    space = get_space("small32")
    table = synthetic_table(space)
    table.to_ofa_yaml(tmp_path)
    again = LatencyTable.from_ofa_yaml(tmp_path, space=space, device="fake")
    assert dict(again.entries) == dict(table.entries)  # median kept as an extra field


def test_truncated_json_raises(tmp_path):
    path = synthetic_table(get_space("small32")).save(tmp_path / "table.json")
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(LatencyTableError, match="not valid JSON") as info:
        LatencyTable.load(path)
    assert isinstance(info.value, OfabenchError)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("entries"),
        lambda d: d.update(format="something-else"),
        lambda d: d.update(schema_version=99),
        lambda d: d["entries"].update({"Conv-input:bad": {"mean_ms": 1.0}}),
        lambda d: d["entries"].update({"Conv-input:8x8x3-output:4x4x8": {"mean_ms": -1.0}}),
    ],
)
def test_invalid_json_content_raises(tmp_path, mutate):
    data = synthetic_table(get_space("small32")).to_dict()
    mutate(data)
    path = tmp_path / "table.json"
    path.write_text(json.dumps(data))
    with pytest.raises(LatencyTableError, match="not a valid ofabench latency table"):
        LatencyTable.load(path)


def test_missing_file_and_bad_yaml_raise(tmp_path):
    with pytest.raises(LatencyTableError, match="does not exist"):
        LatencyTable.load(tmp_path / "nope.json")
    with pytest.raises(LatencyTableError, match="no OFA lookup tables"):
        LatencyTable.from_ofa_yaml(tmp_path, space="small32")
    (tmp_path / "32_lookup_table.yaml").write_text("Conv-input: [unclosed\n")
    with pytest.raises(LatencyTableError, match="not valid YAML"):
        LatencyTable.from_ofa_yaml(tmp_path, space="small32")


def test_plain_ops_reject_mbconv_fields():
    with pytest.raises(LatencyTableError, match="shapes only"):
        OpSpec("stem", 224, 3, 112, 24, kernel=3)
