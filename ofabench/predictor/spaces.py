"""The space a predictor was trained on, and whether it may predict for another space.

A predictor fitted on subnets of one space predicts for that space or a restriction of it
(fewer kernel / expand / depth / resolution choices, same network). Any other space (another
width multiplier, other stages) is a mismatch: an error, unless the caller explicitly allows
it, in which case the mismatch is described in one sentence that the output records.
"""

from __future__ import annotations

import dataclasses
import logging

from ..errors import ConfigError
from ..space import SpaceSpec

logger = logging.getLogger("ofabench")

CHOICE_FIELDS = ("kernel_choices", "expand_choices", "depth_choices", "resolutions")
ALLOW_FLAG = "--allow-space-mismatch"


def is_restriction(space: SpaceSpec, of: SpaceSpec) -> bool:
    """True if ``space`` is ``of`` with the same or fewer choices (names may differ)."""
    widened = dataclasses.replace(space, **{f: getattr(of, f) for f in CHOICE_FIELDS})
    if widened.fingerprint() != of.fingerprint():
        return False
    return all(set(getattr(space, f)) <= set(getattr(of, f)) for f in CHOICE_FIELDS)


def check_predictor_space(
    trained: SpaceSpec, space: SpaceSpec, source: str, allow_mismatch: bool = False
) -> str | None:
    """None if a predictor trained on ``trained`` may predict for ``space``; else raise a
    one-line :class:`ConfigError`, or with ``allow_mismatch`` return the sentence describing
    the mismatch (for the output to record)."""
    if is_restriction(space, trained):
        return None
    note = (
        f"predictor {source} was trained on space {trained.name!r} but is used for space "
        f"{space.name!r}"
    )
    if trained.family != space.family:
        note += f" (family {trained.family!r}, not {space.family!r})"
    if not allow_mismatch:
        raise ConfigError(
            f"{note}, which is neither that space nor a restriction of it; search "
            f"--space {trained.name} (with a latency table of that space), use a predictor "
            f"fitted on {space.name!r}, or pass {ALLOW_FLAG} to use it anyway (the output "
            "records it)"
        )
    logger.warning("%s (%s: its predictions are not a fit to this space)", note, ALLOW_FLAG)
    return f"{note} ({ALLOW_FLAG}): its predictions are not a fit to this space"
