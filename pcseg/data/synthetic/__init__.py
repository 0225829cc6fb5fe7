"""Procedural synthetic scenes written in the real on-disk formats (offline demo and tests)."""

from pcseg.data.synthetic.indoor import make_room, write_indoor_s3dis, write_indoor_scannet
from pcseg.data.synthetic.outdoor import write_outdoor_sequences

__all__ = ["make_room", "write_indoor_s3dis", "write_indoor_scannet", "write_outdoor_sequences"]
