"""Plain-PyTorch implementations of every detops op: the truth the kernels are tested against.

One module per op family, named as the kernel files are (csrc/cpu/<family>.cpp, csrc/cuda/<family>.cu).
They favour obviousness over speed and use no detops kernel.
"""
