"""Test-session settings that must be in place before TensorFlow is imported.

oneDNN picks its float kernels at run time by the CPU's instruction set (AVX2,
AVX-512, AMX), so with it on the same program gives results that differ in the
last bits from one machine to the next (seen: up to 2e-6 absolute on the golden
values between two CI machines). The tests run with TensorFlow's own kernels
by default, which narrows, but does not remove, the machine dependence: Eigen
and XLA still choose vectorized kernels by instruction set. So no test
compares a value recorded on one machine bit for bit on another: the golden
values of tests/golden are compared within a float32 tolerance scaled by the
size of the computation (their module says how), and pass with
`TF_ENABLE_ONEDNN_OPTS=0` and `=1` alike. Exact comparisons remain only
between two results computed in the same process. An explicit
`TF_ENABLE_ONEDNN_OPTS` in the environment is respected.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
