"""Test-session settings that must be in place before TensorFlow is imported.

oneDNN picks its float kernels at run time by the CPU's instruction set (AVX2,
AVX-512, AMX), so with it on the same program gives results that differ in the
last bits from one machine to the next (seen: up to 2e-6 absolute on the golden
values between two CI machines). The tests run with TensorFlow's own kernels,
which are fixed when TensorFlow is built, so that exact comparisons (the golden
values of tests/golden) mean the same on every machine. An explicit
`TF_ENABLE_ONEDNN_OPTS` in the environment is respected.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
