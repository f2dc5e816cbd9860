"""imagedrop: drop an image in a folder, get it edited by AI, hear about it by signed callback."""

__version__ = "0.1.0"
