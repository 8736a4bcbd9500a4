"""MACs and parameters of a subnet, computed from its geometry (no model is built).

Counts follow OFA's ``count_net_flops``: conv and linear multiply-accumulates only (SE convs
included, BN/activations/pooling free). Parameters count what a trained static subnet holds:
conv and linear weights and biases, BN weights and biases (not running statistics).
"""

from __future__ import annotations

from ..space import ArchConfig, LayerGeom, SpaceSpec


def layer_macs(layer: LayerGeom) -> int:
    out_px = layer.out_hw * layer.out_hw
    if layer.kind == "stem":
        return out_px * layer.in_c * layer.out_c * layer.kernel * layer.kernel
    if layer.kind == "mbconv":
        expand = layer.hw * layer.hw * layer.in_c * layer.mid if layer.has_expand else 0
        depthwise = out_px * layer.mid * layer.kernel * layer.kernel
        se = 2 * layer.mid * layer.se_mid
        project = out_px * layer.mid * layer.out_c
        return expand + depthwise + se + project
    if layer.kind == "final_expand":
        return out_px * layer.in_c * layer.out_c
    if layer.kind in ("feature_mix", "classifier"):
        return layer.in_c * layer.out_c
    if layer.kind == "bottleneck":
        reduce = layer.hw * layer.hw * layer.in_c * layer.mid
        middle = out_px * layer.mid * layer.mid * layer.kernel * layer.kernel
        downsample = 0 if layer.residual else out_px * layer.in_c * layer.out_c
        return reduce + middle + out_px * layer.mid * layer.out_c + downsample
    return 0  # pool, maxpool


def layer_params(layer: LayerGeom) -> int:
    if layer.kind == "stem":
        return layer.in_c * layer.out_c * layer.kernel * layer.kernel + 2 * layer.out_c
    if layer.kind == "mbconv":
        expand = layer.in_c * layer.mid + 2 * layer.mid if layer.has_expand else 0
        depthwise = layer.mid * layer.kernel * layer.kernel + 2 * layer.mid
        se = 2 * layer.mid * layer.se_mid + layer.se_mid + layer.mid if layer.se else 0
        project = layer.mid * layer.out_c + 2 * layer.out_c
        return expand + depthwise + se + project
    if layer.kind == "final_expand":
        return layer.in_c * layer.out_c + 2 * layer.out_c
    if layer.kind == "feature_mix":
        return layer.in_c * layer.out_c
    if layer.kind == "classifier":
        return layer.in_c * layer.out_c + layer.out_c
    if layer.kind == "bottleneck":
        reduce = layer.in_c * layer.mid + 2 * layer.mid
        middle = layer.mid * layer.mid * layer.kernel * layer.kernel + 2 * layer.mid
        downsample = 0 if layer.residual else layer.in_c * layer.out_c + 2 * layer.out_c
        return reduce + middle + layer.mid * layer.out_c + 2 * layer.out_c + downsample
    return 0


def count_macs(space: SpaceSpec, arch: ArchConfig) -> int:
    """Multiply-accumulates of one forward pass of ``arch`` at its resolution, batch 1."""
    return sum(layer_macs(layer) for layer in space.layers(arch))


def count_params(space: SpaceSpec, arch: ArchConfig) -> int:
    """Trainable parameters of the static subnet ``arch`` (resolution does not matter)."""
    return sum(layer_params(layer) for layer in space.layers(arch))


def supernet_params(space: SpaceSpec) -> int:
    """Trainable parameters of the whole supernet: its largest subnet plus the kernel transforms."""
    ks = sorted(space.kernel_choices)
    transforms = sum(small * small * small * small for small in ks[:-1])
    return count_params(space, space.max_arch()) + len(space.slots()) * transforms
