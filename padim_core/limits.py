"""Every size cap padim_core enforces, in one place.

All values are immutable. Megabyte values are MiB (1 MB = 1024 * 1024 bytes here).
Nothing here touches global library state (e.g. ``PIL.Image.MAX_IMAGE_PIXELS``):
``padim_core.images`` checks the header size itself before decoding.
"""

from __future__ import annotations

#: Largest accepted image, width * height (64 megapixels, e.g. 8000 x 8000).
MAX_IMAGE_PIXELS: int = 64_000_000

#: Smallest accepted image side in pixels; smaller images carry no usable texture.
MIN_IMAGE_SIDE: int = 8

#: Largest image, zip or mask upload in MB (each uploader's ``max_upload_size`` in the app; the
#: scoring service's request cap).
MAX_UPLOAD_MB: int = 200

#: Most entries (files, not folders) a zip archive may list before it is refused unread.
MAX_ARCHIVE_MEMBERS: int = 5000

#: Most bytes (in MB) the image members of one zip may unpack to, declared or actual.
MAX_ARCHIVE_UNCOMPRESSED_MB: int = 2048

#: Highest uncompressed:compressed ratio of one zip member (zip-bomb guard).
MAX_COMPRESSION_RATIO: int = 200

#: Members smaller than this (in bytes) skip the ratio check: tiny files compress oddly.
COMPRESSION_RATIO_MIN_BYTES: int = 1024 * 1024

#: Largest model file read from disk in MB (a Wide-ResNet50 d=550 model is ~3.8 GB).
MAX_MODEL_FILE_MB: int = 8192

#: Largest model file accepted as a browser upload in MB: an updatable model of the default
#: settings is 0.7-1.1 GB. Must equal ``server.maxUploadSize`` in .streamlit/config.toml, the
#: server's cap for every upload (the image uploaders ask the browser for MAX_UPLOAD_MB).
MAX_MODEL_UPLOAD_MB: int = 2048

#: File suffixes (lower case) treated as images in folders and archives.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
)

#: Pillow formats load_image opens (JPEG covers MPO); others (EPS, PSD...) are refused.
DECODABLE_FORMATS: frozenset[str] = frozenset({"PNG", "JPEG", "BMP", "DIB", "TIFF", "WEBP", "GIF"})
