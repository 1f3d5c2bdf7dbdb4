"""The error types of camloc: imported by every layer, importing nothing of camloc.

Each carries a one-line message naming the file or setting and the problem; the CLI prints it without a traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """A file or argument that cannot be used; the message is one line naming the file and the problem."""


class HeadError(InputError):
    """The model has no head that CAM can use exactly."""


class LayerError(InputError):
    """A layer that does not exist, is not called, or has no spatial (B, C, h, w) output."""


class NotAnImageError(InputError):
    """Bytes that no image decoder recognises (the server answers 415 Unsupported Media Type)."""


class ImageTooLargeError(InputError):
    """An image over the pixel limit, a decompression bomb included (refused before its pixels are decoded)."""
