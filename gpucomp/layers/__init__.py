"""Reading a layers folder: which files are traits (scan, naming), decoding and checking each one
(decode, png_read, png_unfilter, frames) into a LayerSet (layerset). Knows nothing of plans or output.
"""
