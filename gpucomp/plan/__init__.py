"""From layers and options to the collection's items: the options themselves, unique weighted sampling,
rules and exact counts, stacks and segments (the whole collection), render layers and animation frames.
"""
