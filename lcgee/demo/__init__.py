"""The embedded demo world: a synthetic Sentinel-2 L2A archive and its loopback servers."""
