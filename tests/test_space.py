"""Search space: validation, conversions, sampling/mutation/crossover staying in the space."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ofabench.errors import ConfigError, InvalidArchError
from ofabench.space import ArchBatch, ArchConfig, get_space, list_spaces, make_divisible

W10 = get_space("ofa_mbv3_w1.0")
SPACES = [get_space(name) for name in list_spaces()]


def test_official_space_shapes() -> None:
    assert W10.stage_channels == (24, 40, 80, 112, 160)
    assert get_space("ofa_mbv3_w1.2").stage_channels == (32, 48, 96, 136, 192)
    assert W10.n_blocks == 20 and W10.n_stages == 5
    assert W10.resolutions == tuple(range(128, 225, 4)) and len(W10.resolutions) == 25
    assert [s.stride for s in W10.stages] == [2, 2, 2, 1, 2]
    assert [s.se for s in W10.stages] == [False, True, False, True, True]
    assert [s.act for s in W10.stages] == ["relu", "relu", "h_swish", "h_swish", "h_swish"]


def test_make_divisible_matches_ofa_rule() -> None:
    assert make_divisible(16 * 1.2) == 24  # 19.2 -> 16 is < 90%, so 24
    assert make_divisible(40 * 1.2) == 48
    assert make_divisible(112 * 1.2) == 136
    assert make_divisible(3, 8) == 8


@pytest.mark.parametrize(
    ("change", "field", "bad"),
    [
        ({"ks": [3] * 19}, "'ks' has 19 entries", None),
        ({"ks": [4] + [3] * 19}, "'ks'[0] = 4", "[3, 5, 7]"),
        ({"e": [3] * 19 + [5]}, "'e'[19] = 5", "[3, 4, 6]"),
        ({"d": [2, 3, 4, 5, 2]}, "'d'[3] = 5", "[2, 3, 4]"),
        ({"r": 226}, "r = 226", "128..224 in steps of 4"),
        ({"r": 130}, "r = 130", "128..224 in steps of 4"),
    ],
)
def test_invalid_arch_names_field_value_and_allowed(
    change: dict, field: str, bad: str | None
) -> None:
    data = {**W10.max_arch().to_dict(), **change}
    with pytest.raises(InvalidArchError) as info:
        W10.validate(data)
    assert field in str(info.value)
    if bad:
        assert bad in str(info.value)


@pytest.mark.parametrize(
    "data",
    [
        {"ks": "3", "e": [3], "d": [2], "r": 128},
        {"ks": [3.5] * 20, "e": [3] * 20, "d": [2] * 5, "r": 128},
        {"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5},
        {"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": 128, "width": 1},
        {"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": [128, 160]},
    ],
)
def test_malformed_arch_dicts_raise(data: dict) -> None:
    with pytest.raises(InvalidArchError):
        W10.validate(data)


def test_ofa_dict_round_trip() -> None:
    arch = W10.sample(3)
    ofa = arch.to_ofa_dict()
    assert ofa["r"] == [arch.r]
    assert ArchConfig.from_dict({**ofa, "wid": None}) == arch
    assert ArchConfig.from_json(arch.to_json()) == arch
    assert json.loads(arch.to_json())["r"] == arch.r
    # an OFA net.config-style dict without resolution takes a default
    no_r = {k: v for k, v in ofa.items() if k != "r"}
    assert ArchConfig.from_dict(no_r, default_r=160).r == 160


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), space_index=st.integers(0, len(SPACES) - 1))
def test_sample_mutate_crossover_stay_in_space(seed: int, space_index: int) -> None:
    space = SPACES[space_index]
    rng = np.random.default_rng(seed)
    a, b = space.sample(rng), space.sample(rng)
    assert space.contains(a) and space.contains(b)
    mutant = space.mutate(a, rng, prob=0.5, resolution_prob=0.5)
    assert space.contains(mutant)
    child = space.crossover(a, b, rng)
    assert space.contains(child)
    for field in ("ks", "e", "d"):
        for value, x, y in zip(
            getattr(child, field), getattr(a, field), getattr(b, field), strict=True
        ):
            assert value in (x, y)
    assert child.r in (a.r, b.r)


def test_sampling_is_seeded_and_covers_choices() -> None:
    assert W10.sample(7) == W10.sample(7)
    archs = [W10.sample(i) for i in range(200)]
    assert {k for a in archs for k in a.ks} == {3, 5, 7}
    assert {d for a in archs for d in a.d} == {2, 3, 4}
    assert len({a.r for a in archs}) > 20


def test_mutation_probability_zero_is_identity_and_one_changes() -> None:
    arch = W10.sample(1)
    assert W10.mutate(arch, 0, prob=0.0, resolution_prob=0.0) == arch
    changed = [W10.mutate(arch, s, prob=1.0, resolution_prob=1.0) != arch for s in range(5)]
    assert all(changed)


def test_restrict_subspace() -> None:
    sub = W10.restrict(kernel_choices=[7], depth_choices=[3, 4])
    assert sub.n_blocks == W10.n_blocks  # same network shape
    arch = sub.sample(0)
    assert set(arch.ks) == {7} and set(arch.d) <= {3, 4}
    with pytest.raises(ConfigError, match="not in space"):
        W10.restrict(kernel_choices=[9])


def test_space_file_round_trip(tmp_path) -> None:
    path = tmp_path / "space.json"
    path.write_text(json.dumps(get_space("small32_w0.5").to_dict()))
    loaded = get_space(path)
    assert loaded == get_space("small32_w0.5")
    assert loaded.fingerprint() == get_space("small32_w0.5").fingerprint()
    assert W10.fingerprint() != get_space("ofa_mbv3_w1.2").fingerprint()
    with pytest.raises(ConfigError, match="unknown space"):
        get_space("resnet50")
    (tmp_path / "bad.json").write_text(json.dumps({"width_mult": 1.0, "colour": "red"}))
    with pytest.raises(ConfigError, match="colour"):
        get_space(tmp_path / "bad.json")


def test_layers_geometry_of_the_official_space() -> None:
    layers = W10.layers(W10.uniform(3, 3, 4, 224))
    kinds = [layer.kind for layer in layers]
    assert kinds[:2] == ["stem", "mbconv"] and kinds[-4:] == [
        "final_expand",
        "pool",
        "feature_mix",
        "classifier",
    ]
    blocks = layers[1:-4]
    assert len(blocks) == 21
    assert blocks[1].hw == 112 and blocks[1].out_hw == 56 and blocks[1].mid == 48  # 16 * 3
    assert layers[-4].hw == 7
    assert [b.residual for b in blocks[1:5]] == [False, True, True, True]


def test_arch_batch_round_trip_and_mask() -> None:
    archs = [W10.sample(i) for i in range(10)]
    batch = ArchBatch.from_archs(archs)
    assert batch.to_archs() == archs
    assert (batch.active_mask(W10).sum(axis=1) == batch.d.sum(axis=1)).all()
    with pytest.raises(InvalidArchError):
        ArchBatch.from_archs([])
