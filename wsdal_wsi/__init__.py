"""wsdal-wsi: mitotic figure detection in H&E whole-slide images, trained from point
annotations with WS-DAL, integrated with QuPath."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wsdal-wsi")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
