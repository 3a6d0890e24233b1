"""From composited pixels to file bytes: PNG (own container, ISA-L deflate), GPU deflate's host side,
WebP/JPEG/AVIF, animated formats, sized copies, and which files each item has.
"""
