"""NAT: netfilter's tuple allocation (core.py); IP Filter's ipnat comes later."""

from ipgate.nat.core import Manip, ManipType, NatRange2, get_unique_tuple, nf_nat_setup_info

__all__ = ["Manip", "ManipType", "NatRange2", "get_unique_tuple", "nf_nat_setup_info"]
