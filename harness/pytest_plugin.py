"""pytest plugin (registered as the `podlab` entry point); filled in by the plugin module."""
