"""What other tools' projects bring: HashLips / nftchef `config.js` read and converted to a gpucomp
config, `--from` item lists (CSV, `_metadata.json`, DNA strings), and one-of-ones folders.
"""
