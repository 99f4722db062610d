"""Neural networks: Net1 (boundary detector), device selection and shipped weights.

Importing this package does not import torch; the submodules that define
networks do.
"""
