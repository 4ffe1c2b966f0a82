"""Connection tracking: tuples, entries, the TCP state table, timeouts, expectations.

The engine calls, per packet, `ConntrackTable.nf_conntrack_in()` at the first
hook and `ConntrackTable.confirm()` at the last one; see table.py.
"""

from ipgate.conntrack.conn import Conn
from ipgate.conntrack.expect import Expectation
from ipgate.conntrack.sysctl import CtSysctl
from ipgate.conntrack.table import CT_INVALID, ConntrackTable, CtResult
from ipgate.conntrack.tuple import Direction, Tuple

__all__ = ["CT_INVALID", "Conn", "ConntrackTable", "CtResult", "CtSysctl", "Direction", "Expectation", "Tuple"]
