"""Routing: FIB tables (net/ipv4/fib_trie.c), rules (fib_rules.c), lookups (route.c)."""
