"""Benchmark plumbing for chapter 7 and ``make bench``, in five modules:

* :mod:`~selfattention.bench.probes`: FLOPs, the timer, the memory probe, the matmul ceiling and
  the machine's context;
* :mod:`~selfattention.bench.impls`: the one table of implementations under test, their plot
  style, the input maker and ``attention_fn``;
* :mod:`~selfattention.bench.suite`: ``SuiteConfig`` and ``run_suite``;
* :mod:`~selfattention.bench.report`: the targets, series and slopes, the plots and the summary;
* :mod:`~selfattention.bench.reference`: the committed reference results chapter 7 shows.

Everything here measures; nothing is computed from a model except the loops at large T, which are
*extrapolated* from small T by the T^2 law and labelled ``extrapolated: true``. Every public name
of the five modules is importable from ``selfattention.bench`` itself.
"""

from .impls import IMPLEMENTATIONS, STYLE, Implementation, attention_fn, make_inputs, settle
from .probes import (
    MiB,
    attention_flops,
    available_bytes,
    machine_context,
    machine_tag,
    matmul_ceiling,
    memory_method,
    peak_extra_bytes,
    time_fn,
)
from .reference import (
    find_results,
    plot_time_memory,
    print_reference_backends,
    print_reference_results,
    reference_label,
)
from .report import (
    TARGETS,
    load_results,
    loglog_slope,
    plot_results,
    reference_series,
    target_ratios,
    write_report,
    write_summary,
)
from .suite import SuiteConfig, run_suite

__all__ = [
    "IMPLEMENTATIONS",
    "MiB",
    "STYLE",
    "TARGETS",
    "Implementation",
    "SuiteConfig",
    "attention_flops",
    "attention_fn",
    "available_bytes",
    "find_results",
    "load_results",
    "loglog_slope",
    "machine_context",
    "machine_tag",
    "make_inputs",
    "matmul_ceiling",
    "memory_method",
    "peak_extra_bytes",
    "plot_results",
    "plot_time_memory",
    "print_reference_backends",
    "print_reference_results",
    "reference_label",
    "reference_series",
    "run_suite",
    "settle",
    "target_ratios",
    "time_fn",
    "write_report",
    "write_summary",
]
