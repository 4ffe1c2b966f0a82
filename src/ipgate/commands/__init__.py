"""The command languages: ip, ifconfig, route, sysctl/echo lines, rt_tables."""
