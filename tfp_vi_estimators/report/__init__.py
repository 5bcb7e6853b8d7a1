"""The estimator report: `python -m tfp_vi_estimators report [--out DIR] [--quick]`.

Sections (each a module with `run(settings, progress, out_dir)` returning a
`SectionResult`; the list is `SECTIONS` in `tfp_vi_estimators.report.run`):

- `stl_fig1`: Roeder et al. (2017) Fig. 1, KL against steps for the total
  and the path derivative on a 100-d Gaussian.
- `snr_vs_k`: SNR of inference-network gradients against K (IWAE, DReG,
  VIMCO, score function) with fitted log-log slopes.
- `variance`: gradient variance and SNR of every estimator and option.
- `bias`: our DOUBLY_REPARAMETERIZED and tfp.vi's against the total
  derivative, in standard errors.
- `speed`: step time against tfp.vi (the core speed benchmark).
"""

from tfp_vi_estimators.report._common import PRESETS, SectionResult, Settings
from tfp_vi_estimators.report.run import SECTIONS, Section, run_report

__all__ = ["PRESETS", "SECTIONS", "Section", "SectionResult", "Settings", "run_report"]
