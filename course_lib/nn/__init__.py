"""Small neural networks in torch that several chapters reuse.

* :mod:`course_lib.nn.tinygpt`: a decoder-only transformer (GPT-2 style) in
  one file, used for capacity estimation (01.04), continuous batching (07) and
  the KV cache (10).

Importing this package does not import torch; import the submodule.
"""
