"""What is made from a finished collection: contact sheets and the reel (with their shared thumbnails),
the static gallery page, upload layouts (export), and which files the collection holds (itemfiles).
"""
