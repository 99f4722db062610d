"""Reproducible, resumable training of Net1 and Net2 on the synthetic stream."""
