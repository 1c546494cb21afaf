"""The generic training engine: triplet training with partial hard-negative mining."""
