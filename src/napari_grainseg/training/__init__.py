"""Reproducible, resumable training of Net1 and Net2 on the synthetic stream.

- :mod:`~napari_grainseg.training.loop`: the one training loop (seeding, AdamW with warm-up and
  cosine, clipping, weight averaging, checkpoint/resume, Ctrl-C, log, callbacks, export);
- :mod:`~napari_grainseg.training.config`: the configs and every check of their fields;
- :mod:`~napari_grainseg.training.net1` / :mod:`~napari_grainseg.training.net2`: each model's data
  and loss, handed to the loop.
"""
