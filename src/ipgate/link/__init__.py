"""Interfaces and their IPv4 addresses (net/core/dev.c, net/ipv4/devinet.c)."""
