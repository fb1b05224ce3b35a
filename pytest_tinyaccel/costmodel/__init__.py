"""Cycle-approximate cost models: ZigZag per-layer cycles composed for Gemmini and AIE-ML."""
