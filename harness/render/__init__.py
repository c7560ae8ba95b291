"""Output: tables, JSON, JUnit, pcap, graphs, containerlab export."""
