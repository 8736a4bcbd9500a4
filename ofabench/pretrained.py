"""Pretrained supernets shipped with ofabench, loaded by name like OFA's, with no download.

Each shipped model is a folder of the package's ``pretrained/`` directory holding::

    manifest.json   name, space, dataset, the files below and their sha256, figures, the study's
                    ``claims.json``, provenance (the study and commands that made it, the git
                    commit, versions), and the supernet's output fingerprint (below)
    supernet.pt     the progressive-shrinking supernet (ofabench checkpoint)
    config.yaml     its training config (space and data for ``eval`` / ``sample-accuracy``)
    predictor.pt    the accuracy predictor fitted on its accuracy dataset
    accuracy.csv    that dataset (random subnets, BN recalibrated, validation accuracy)

``--checkpoint NAME`` and ``--predictor NAME`` take a shipped model's name wherever they take a
file (:func:`resolve`). ``OFABENCH_PRETRAINED_DIR`` points to another folder of shipped models.

The fingerprint is the logits of the largest and the smallest subnet (the checkpoint's own BN
statistics, eval mode) for a fixed seeded input, taken when the model is shipped;
:func:`verify` loads the model by name and checks its files' hashes and that it still computes
those logits.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .provenance import provenance, write_json

if TYPE_CHECKING:
    from .space import SpaceSpec

KINDS = ("supernet", "predictor", "accuracy", "config")
FILES = {
    "supernet": "supernet.pt",
    "predictor": "predictor.pt",
    "accuracy": "accuracy.csv",
    "config": "config.yaml",
}


def pretrained_dir() -> Path:
    """The folder of shipped models (the package's, or ``OFABENCH_PRETRAINED_DIR``)."""
    override = os.environ.get("OFABENCH_PRETRAINED_DIR")
    return Path(override) if override else Path(__file__).resolve().parent / "pretrained"


def shipped() -> dict[str, dict[str, Any]]:
    """Every shipped model's manifest, by name."""
    root = pretrained_dir()
    out = {}
    if root.is_dir():
        for manifest in sorted(root.glob("*/manifest.json")):
            try:
                data = json.loads(manifest.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            out[manifest.parent.name] = data
    return out


def looks_like_name(value: str) -> bool:
    """A bare word: no folder part, no file suffix, not a ``scheme:`` reference."""
    return bool(value) and not any(c in value for c in "/\\:") and not Path(value).suffix


def resolve(value: str | Path, kind: str) -> Path:
    """``value`` as a file path: an existing path as it is, a shipped model's name as that
    model's file of ``kind``; another bare name is an error listing the shipped models."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    text = str(value)
    if Path(text).exists() or not looks_like_name(text):
        return Path(text)
    models = shipped()
    if text not in models:
        names = ", ".join(models) or "none"
        raise ConfigError(
            f"{text!r} is neither a file nor a shipped model; shipped models: {names}"
        )
    return pretrained_dir() / text / models[text]["files"][kind]


def ship(
    name: str,
    files: Mapping[str, str | Path],
    space: str,
    dataset: str,
    figures: Mapping[str, Any],
    made_by: Mapping[str, Any],
    dest: Path | None = None,
    claims: Mapping[str, Any] | None = None,
) -> Path:
    """Copy a study's supernet, config, predictor and accuracy dataset into the shipped models
    as ``name`` with a manifest of where they came from."""
    if not looks_like_name(name):
        raise ConfigError(f"a shipped model's name is a bare word, got {name!r}")
    missing = [k for k in KINDS if k not in files or not Path(files[k]).is_file()]
    if missing:
        raise ConfigError(f"cannot ship {name!r}: missing {missing}")
    folder = (dest or pretrained_dir()) / name
    folder.mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        shutil.copyfile(files[kind], folder / FILES[kind])
    manifest = {
        "name": name,
        "space": space,
        "dataset": dataset,
        "files": FILES,
        "sha256": {kind: _sha256(folder / FILES[kind]) for kind in KINDS},
        "fingerprint": fingerprint(folder / FILES["supernet"], _space_of(folder / FILES["config"])),
        "figures": dict(figures),
        "claims": dict(claims) if claims is not None else None,
        "made_by": {**made_by, "git_commit": _git_commit()},
        "provenance": provenance(),
    }
    write_json(folder / "manifest.json", manifest)
    return folder


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
            cwd=Path(__file__).resolve().parent,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


FINGERPRINT_SEED = 0
FINGERPRINT_BATCH = 4


def fingerprint(supernet: str | Path, space: str | SpaceSpec) -> dict[str, Any]:
    """Logits of the largest and smallest subnet of the checkpoint ``supernet`` for a fixed
    seeded input at the space's largest resolution (eval mode, the checkpoint's BN statistics).
    ``space``: a preset's name or the space itself (a shipped model's comes from its config,
    which also holds spaces defined inline)."""
    import torch

    from .space import get_space
    from .supernet.checkpoint import load_supernet

    spec = get_space(space)
    net = load_supernet(Path(supernet), spec).eval()
    r = max(spec.resolutions)
    generator = torch.Generator().manual_seed(FINGERPRINT_SEED)
    x = torch.rand(FINGERPRINT_BATCH, spec.in_channels, r, r, generator=generator)
    out: dict[str, Any] = {"seed": FINGERPRINT_SEED, "input": list(x.shape)}
    with torch.no_grad():
        for which, arch in (("largest", spec.max_arch()), ("smallest", spec.min_arch())):
            net.set_active_subnet(arch)
            out[which] = [[round(float(v), 5) for v in row] for row in net(x)]
    return out


def verify(name: str, atol: float = 2e-4) -> list[str]:
    """What is wrong with the shipped model ``name`` (empty: nothing): files whose sha256
    differs from the manifest's, and logits that differ from its fingerprint by more than
    ``atol``."""
    models = shipped()
    if name not in models:
        raise ConfigError(f"{name!r} is not a shipped model; shipped models: "
                          f"{', '.join(models) or 'none'}")  # fmt: skip
    manifest = models[name]
    folder = pretrained_dir() / name
    problems = [
        f"{kind}: sha256 differs from the manifest's"
        for kind, digest in manifest.get("sha256", {}).items()
        if _sha256(folder / manifest["files"][kind]) != digest
    ]
    expected = manifest.get("fingerprint")
    if expected is None:
        return [*problems, "the manifest has no fingerprint"]
    got = fingerprint(resolve(name, "supernet"), _space_of(resolve(name, "config")))
    for which in ("largest", "smallest"):
        diff = max(
            abs(a - b) for ra, rb in zip(got[which], expected[which]) for a, b in zip(ra, rb)
        )
        if diff > atol:
            problems.append(f"{which} subnet's logits differ from the fingerprint by {diff:.3g}")
    return problems


def _space_of(config: Path) -> SpaceSpec:
    """The search space of the training config ``config`` (a preset or a space given inline)."""
    from .training.config import load_config

    return load_config(config).space_spec()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
