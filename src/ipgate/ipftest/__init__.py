"""`ipgate ipftest`: IP Filter 4.1.28's offline tester (tools/ipftest.c).

input.py reads packets (``-F text``: lib/ipft_tx.c, ``-F hex``: lib/ipft_hx.c),
filter.py is the ipf.conf subset with its state table, main.py is the
command line, fr_check() around the NAT of nat/ipnat and the printing.
"""

from ipgate.ipftest.main import ipftest, main

__all__ = ["ipftest", "main"]
