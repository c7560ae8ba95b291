"""plan -> each node's network: addresses, bridges, routes, NAT, pod wiring."""
