"""rally_lm: live-migration benchmarking for OpenStack, as Rally plugins."""

from importlib import metadata

try:
    __version__ = metadata.version("rally-lm")
except metadata.PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"
