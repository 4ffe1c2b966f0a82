"""`ipgate lab`: network-namespace topologies with ipgate (or the kernel) as their gateway.

    topology.py  the description format (TOML) and its checks
    stepparse.py the steps' grammar and options
    builtin.py   the built-in topologies (`demo`)
    scenarios/   the seeds' scenarios (`ipgate lab NAME`): ip-alias, faq-7.36, split-access, port-forward,
                 port-forward-ipnat, rdr-round-robin, map-block, ftp, table-full, udp-masq
    netns.py     namespaces, veth pairs, bridges, commands run inside them, stale cleanup
    agent.py     the hosts' tools (run inside a namespace): ping, a TCP client, and the entry point of
    clients.py   HTTP, DNS-like UDP, FTP (ftplib) clients and the conntrack table filler
    servers.py   bounded servers: TCP lines and HTTP, UDP, FTP
    wire.py      what they say to each other (DNS TXT messages, the FTP file)
    kernel.py    the configuration script applied to the kernel (iptables-legacy) instead
    steps.py     the steps of a scenario: ping, serve, show, and the dispatch
    clientsteps.py  tcp, udp, http, ftp, fill, arp, log
    run.py       bring a lab up, run the gateway and the steps, tear everything down
    report.py    what `ipgate lab` prints
"""
