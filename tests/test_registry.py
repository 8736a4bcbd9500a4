"""The generic registry every extension point uses: taken and missing names, lazy built-ins and
entry points."""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ofabench.errors import BackendError, ConfigError
from ofabench.registry import Registry, RegistryMessages

LAZY_MODULE = "ofabench_registry_test_widgets"
GROUP = "ofabench.registry_test_widgets"


class Widget:
    name: ClassVar[str] = ""


class Gear(Widget):
    name = "gear"


class Cog(Widget):
    name = "cog"


@pytest.fixture
def lazy_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module on the path defining ``Spring(Widget)``, not imported yet; forgotten afterwards."""
    (tmp_path / f"{LAZY_MODULE}.py").write_text(
        "from tests.test_registry import Widget\n\n\nclass Spring(Widget):\n    name = 'spring'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield f"{LAZY_MODULE}:Spring"
    sys.modules.pop(LAZY_MODULE, None)


def _fake_entry_points(monkeypatch: pytest.MonkeyPatch, **targets: str) -> None:
    entries = [importlib.metadata.EntryPoint(n, v, GROUP) for n, v in targets.items()]

    def entry_points(**params: Any) -> list[importlib.metadata.EntryPoint]:
        return entries if params.get("group") == GROUP else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_a_taken_name_is_refused_and_the_same_class_again_is_fine() -> None:
    widgets = Registry("widget", Widget)
    widgets.register(Gear)

    class OtherGear(Widget):
        name = "gear"

    with pytest.raises(ConfigError, match=r"widget name 'gear' is taken by tests\.test_registry"):
        widgets.register(OtherGear)
    assert widgets.register(Gear) is Gear and widgets.get("gear") is Gear


def test_a_class_without_a_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="widget Widget has no name"):
        Registry("widget", Widget).register(Widget)


def test_an_unknown_name_lists_the_valid_ones_in_the_registrys_words() -> None:
    widgets = Registry("widget", Widget, builtin={"spring": "nowhere:Spring"})
    widgets.register(Gear)
    widgets.register(Cog)
    with pytest.raises(
        ConfigError, match=r"^unknown widget 'gear2'; valid: \['cog', 'gear', 'spring'\]$"
    ):
        widgets.get("gear2")
    worded = Registry(
        "widget",
        Widget,
        error=BackendError,
        messages=RegistryMessages(unknown="no widget {name!r}; known: {valid_text}"),
    )
    worded.register(Gear)
    worded.register(Cog)
    with pytest.raises(BackendError, match=r"^no widget 'x'; known: cog, gear$"):
        worded.get("x")


def test_a_builtin_is_imported_only_on_first_get(lazy_module: str) -> None:
    widgets = Registry("widget", Widget, builtin={"spring": lazy_module})
    assert widgets.names() == ["spring"] and LAZY_MODULE not in sys.modules
    spring = widgets.get("spring")
    assert LAZY_MODULE in sys.modules and spring.__name__ == "Spring"
    assert widgets.get("spring") is spring


def test_a_builtin_name_is_taken_before_it_is_imported(lazy_module: str) -> None:
    widgets = Registry("widget", Widget, builtin={"spring": lazy_module})

    class Impostor(Widget):
        name = "spring"

    with pytest.raises(ConfigError, match=rf"'spring' is taken by {LAZY_MODULE}\.Spring"):
        widgets.register(Impostor)


def test_entry_points_are_discovered(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(monkeypatch, cog=f"{__name__}:Cog")
    widgets = Registry("widget", Widget, entry_point_group=GROUP)
    assert widgets.names() == ["cog"]
    assert widgets.get("cog") is Cog
    assert Registry("widget", Widget).names() == []  # no group, no entry points


def test_a_broken_or_foreign_entry_point_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(monkeypatch, broken="no_such_module_here:Cog", path="pathlib:Path")
    widgets = Registry("widget", Widget, entry_point_group=GROUP)
    with pytest.raises(ConfigError, match="widget 'broken' from entry point .* failed to load"):
        widgets.get("broken")
    with pytest.raises(ConfigError, match="'pathlib:Path' is not an ofabench Widget subclass"):
        widgets.get("path")
