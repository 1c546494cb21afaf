"""Small reusable layers (timm's ``layers/`` idea): pooling and aggregation heads."""

from vpr_bench.layers.gem import GeM, L2Norm
from vpr_bench.layers.netvlad import NetVLAD

__all__ = ["GeM", "L2Norm", "NetVLAD"]
