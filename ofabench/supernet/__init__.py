"""The elastic OFA-MobileNetV3 supernet, its static subnets and checkpoint import."""

from .elastic import ElasticMBConv
from .ofa_mbv3 import OFAMobileNetV3
from .static import MBConv, MobileNetV3

__all__ = ["ElasticMBConv", "MBConv", "MobileNetV3", "OFAMobileNetV3"]
