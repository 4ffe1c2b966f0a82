"""The built-in topologies of `ipgate lab` (TOML, as topology.py describes)."""

from __future__ import annotations

# Two LAN hosts behind the gateway; two uplinks, each to an ISP router in its own
# namespace; a server on the network beyond both ISPs.  Masquerading on both
# uplinks; SMTP is marked in mangle PREROUTING and leaves by uplink 2 (`ip rule
# fwmark`, as in the RHEL4 policy-routing document and the LARTC/FAQ recipes).
#
#   lan1 10.0.0.2 ─┐                ┌ eth1 192.0.2.2 ── 192.0.2.1 isp1 203.0.113.1 ─┐
#                  ├ lan ─ eth0 ─ gw                                               ├ net ─ server 203.0.113.10
#   lan2 10.0.0.3 ─┘      10.0.0.1  └ eth2 198.51.100.2 ── 198.51.100.1 isp2 203.0.113.2 ─┘
DEMO = '''\
name = "demo"
about = """LAN hosts 10.0.0.2 and 10.0.0.3 reach a server at 203.0.113.10 through the gateway, which \
masquerades on two uplinks (isp1 192.0.2.1, isp2 198.51.100.1) and sends SMTP (port 25, marked 0x2) \
out of the second one by policy routing."""
steps = [
    "serve server 80 25",
    "ping lan1 203.0.113.10 3",
    "ping lan2 203.0.113.10 3",
    "tcp lan1 203.0.113.10:80 expect 192.0.2.2",
    "tcp lan2 203.0.113.10:80 expect 192.0.2.2",
    "tcp lan1 203.0.113.10:25 expect 198.51.100.2",
    "tcp lan2 203.0.113.10:25 expect 198.51.100.2",
    "show ip rule list",
    "show ip route show table smtp",
    "show iptables -t nat -nvL",
    "show iptables -t mangle -nvL",
    "show conntrack -L",
    "show ip neigh",
]

[gateway]
links = { eth0 = "lan", eth1 = "up1", eth2 = "up2" }
config = """
# The gateway: LAN on eth0, uplink 1 on eth1, uplink 2 on eth2.
ip link add eth0 type dummy
ip link add eth1 type dummy
ip link add eth2 type dummy
ip addr add 10.0.0.1/24 dev eth0
ip addr add 192.0.2.2/24 dev eth1
ip addr add 198.51.100.2/24 dev eth2
ip link set eth0 up
ip link set eth1 up
ip link set eth2 up
ip route add default via 192.0.2.1 dev eth1
echo 1 > /proc/sys/net/ipv4/ip_forward

# SMTP from the LAN leaves by uplink 2: marked 0x2, rule fwmark 0x2 -> table smtp
echo "100 smtp" >> /etc/iproute2/rt_tables
ip route add default via 198.51.100.1 dev eth2 table smtp
ip rule add fwmark 0x2 table smtp
iptables -t mangle -A PREROUTING -i eth0 -p tcp --dport 25 -j MARK --set-mark 0x2

# Everything from the LAN leaves with the address of the uplink it takes
iptables -t nat -A POSTROUTING -o eth1 -j MASQUERADE
iptables -t nat -A POSTROUTING -o eth2 -j MASQUERADE
"""

[hosts.lan1]
links = { eth0 = "lan 10.0.0.2/24" }
routes = ["default via 10.0.0.1"]

[hosts.lan2]
links = { eth0 = "lan 10.0.0.3/24" }
routes = ["default via 10.0.0.1"]

[hosts.isp1]
links = { eth0 = "up1 192.0.2.1/24", eth1 = "net 203.0.113.1/24" }
forward = true

[hosts.isp2]
links = { eth0 = "up2 198.51.100.1/24", eth1 = "net 203.0.113.2/24" }
forward = true

[hosts.server]
links = { eth0 = "net 203.0.113.10/24" }
routes = ["default via 203.0.113.1", "198.51.100.0/24 via 203.0.113.2"]
'''

BUILTIN: dict[str, str] = {"demo": DEMO}
