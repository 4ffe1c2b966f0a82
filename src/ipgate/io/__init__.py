"""The live gateway's I/O: devices, sockets, the clock and signals.

Everything here touches the operating system; the core (stack, engine,
link layer) never imports this package and gets the time as `now`.
"""
