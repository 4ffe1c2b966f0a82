"""`ipgate lab`: network-namespace topologies with ipgate (or the kernel) as their gateway.

    topology.py  the description format (TOML) and its checks
    builtin.py   the built-in topologies (`demo`)
    netns.py     namespaces, veth pairs, bridges, commands run inside them, stale cleanup
    agent.py     the hosts' tiny tools: ping, a TCP client, a bounded TCP server
    kernel.py    the configuration script applied to the kernel (iptables-legacy) instead
    steps.py     the steps of a scenario: ping, tcp, serve, show
    run.py       bring a lab up, run the gateway and the steps, tear everything down
    report.py    what `ipgate lab` prints
"""
