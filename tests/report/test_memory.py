"""Peak resident memory and CPU time of the report's process."""

import numpy as np

from tfp_vi_estimators.report import document, memory


def test_usage_is_positive_and_the_peak_bounds_the_current_size():
    usage = memory.usage()
    assert usage.peak_rss_mb > 10 and usage.cpu_seconds > 0
    assert usage.children_peak_rss_mb >= 0
    assert 0 < usage.current_rss_mb <= usage.peak_rss_mb + 1


def test_peak_increase_sees_a_large_allocation():
    # 200 MB of float64 ones, written (so resident) and alive at the last sample.
    array, added = memory.peak_rss_increase_mb(lambda: np.ones(25_000_000))
    assert array.nbytes == 200_000_000
    assert 150 < added < 400
    _, added = memory.peak_rss_increase_mb(lambda: None)
    assert added < 50


def test_footer():
    meta = dict(
        peak_rss_mb=1234.4,
        children_peak_rss_mb=10.0,
        total_seconds=61.0,
        cpu_seconds=100.2,
        cpus=2,
    )
    assert document.footer(meta) == (
        "Peak resident memory: 1234 MB (this process; largest child process 10 MB)."
        " Wall time 61 s, CPU time 100 s on 2 CPU(s)."
    )
    assert document.footer({}) == ""
