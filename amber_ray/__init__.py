"""amber_ray: AMBER-style neural architecture search for genomic sequence CNNs, on Ray."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("amber_ray")
except PackageNotFoundError:  # run from a source tree that was not installed
    __version__ = "0+unknown"
