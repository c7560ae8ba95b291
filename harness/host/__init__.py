"""The kernel and Docker: containers, namespaces, netlink, firewall, images."""
