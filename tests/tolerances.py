"""Error bounds shared by tests in different folders (a bound lives once, so the tests cannot drift apart)."""

GIF_QUANTIZED_MAX_MEAN_ERROR = 6.0  # mean |error| per channel, over 256 colours, median cut, no dither
