"""The typed config loader: each field checked against its annotation and declared limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ofabench.errors import ConfigError
from ofabench.typed_config import bounds, check, from_mapping, one_of


@dataclass(frozen=True)
class Example:
    epochs: int = field(metadata=bounds(ge=1))
    lr: float = field(default=0.1, metadata=bounds(gt=0))
    augment: str | None = field(default=None, metadata=one_of("none", "crop"))
    resolutions: tuple[int, ...] = field(default=(32,), metadata=bounds(ge=1))
    sort: bool = False
    limit: int | None = field(default=None, metadata=bounds(ge=0))
    spec: str | tuple[int, ...] = "all"
    out: Path = Path("runs")


@dataclass(frozen=True)
class SelfChecking:
    n: int = field(default=1, metadata=bounds(ge=1))

    def __post_init__(self) -> None:
        check(self, "self")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"epochs": 1.5}, "x: epochs must be a positive integer, got 1.5"),
        ({"epochs": "two"}, "epochs must be a positive integer, got 'two'"),
        ({"epochs": True}, "epochs must be a positive integer, got True"),
        ({"epochs": 2.0}, "epochs must be a positive integer, got 2.0"),
        ({"epochs": 0}, "epochs must be a positive integer, got 0"),
        ({"epochs": 1, "lr": -1}, "lr must be a number > 0, got -1"),
        ({"epochs": 1, "lr": float("inf")}, "lr must be a number > 0"),
        ({"epochs": 1, "lr": False}, "lr must be a number > 0, got False"),
        ({"epochs": 1, "augment": "flip"}, "augment must be null or one of ['none', 'crop']"),
        ({"epochs": 1, "resolutions": [-8, 32]}, "resolutions must be a list of positive integers"),
        ({"epochs": 1, "resolutions": "abc"}, "resolutions must be a list of positive integers"),
        ({"epochs": 1, "sort": "no"}, "sort must be true or false, got 'no'"),
        ({"epochs": 1, "limit": -5}, "limit must be null or a non-negative integer, got -5"),
        ({"epochs": 1, "spec": [3, "a"]}, "spec must be a string or a list of integers"),
        ({"epochs": 1, "out": 5}, "out must be a path, got 5"),
        ({"epochs": 1, "colour": "red"}, "unknown key(s) ['colour']; valid keys: ['epochs',"),
        ({}, "missing key(s) ['epochs']"),
        ("epochs: 1", "x must be a mapping of ['epochs',"),
    ],
)
def test_bad_values_name_the_field_the_value_and_what_is_allowed(
    data: object, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        from_mapping(Example, data, "x")  # type: ignore[arg-type]
    assert message in str(info.value)


def test_good_values_are_normalised() -> None:
    got = from_mapping(
        Example, {"epochs": 3, "lr": 1, "resolutions": [24, 32], "spec": [3], "out": "r"}, "x"
    )
    assert got == Example(3, 1.0, None, (24, 32), False, None, (3,), Path("r"))
    assert isinstance(got.lr, float) and from_mapping(Example, {"epochs": 1}, "x").spec == "all"


def test_a_class_can_check_itself() -> None:
    assert SelfChecking(2).n == 2
    with pytest.raises(ConfigError, match="self: n must be a positive integer, got 1.5"):
        SelfChecking(1.5)  # type: ignore[arg-type]
