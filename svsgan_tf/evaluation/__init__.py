"""Evaluation: BSS Eval v4 scores, track-level evaluation with mixture and oracle rows, paired comparisons."""
