"""Accuracy metrics (boundary F1, variation of information, ...) and the frozen test sets of ``grainseg eval``."""
