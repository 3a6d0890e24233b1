"""Per-token metadata (ERC-721, Solana, ERC-1155, Tezos) and the rarity reports (gpucomp's own and
OpenRarity's score and rank): pure functions and report writers, no knowledge of the output folder.
"""
