"""pcseg: label-efficient semantic segmentation of point clouds and LiDAR.

Importing the package is side-effect free: it loads no optional extras, touches no CUDA and
prints nothing. The compiled extension ``pcseg._C`` is loaded lazily by :mod:`pcseg.ops`.
"""

__version__ = "0.1.0"
