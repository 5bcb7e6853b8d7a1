"""The estimator report: `python -m tfp_vi_estimators report [--out DIR] [--quick]`.

Sections, in order (`SECTIONS` in `tfp_vi_estimators.report.run`):

- `stl_fig1`: Roeder et al. (2017) Fig. 1, KL against steps for the total
  and the path derivative on a 100-d Gaussian.
- `snr_vs_k`: SNR of inference-network gradients against K (IWAE, DReG,
  VIMCO, score function) with fitted log-log slopes.
- `variance`: gradient variance and SNR of every estimator and option.
- `bias`: our DOUBLY_REPARAMETERIZED and tfp.vi's against the total
  derivative, in standard errors.
- `speed`: step and compile time against tfp.vi (the timing harness of
  `timing`) and how cost grows (`scaling`).
- `psis_khat`: PSIS k-hat, with its verdict, of the surrogate each estimator
  fits (mean-field and full-rank, two targets).
- `qmc_variance`: gradient variance of iid against randomized quasi-Monte
  Carlo sampling across the sample size, with log-log slopes.
- `accuracy`: posterior accuracy on Inference Gym targets with known
  posteriors: `tfp.vi` against our estimators and options at equal steps and
  equal time (`accuracy_targets`, `accuracy_fits`, `accuracy_metrics`,
  `accuracy_tables`, `accuracy_retime`).
- `discrete`: the discrete-latent estimators on the RELAX toy (variance
  table) and a Bernoulli VAE on MNIST (DisARM's Figs. 5 and 6), with the
  papers' directions checked (`discrete_toy`, `discrete_vae`,
  `discrete_vae_summary`).

Each section module computes its numbers (`compute(settings)`, a frozen
dataclass), renders them (`render`, `summarize`) and, for `stl_fig1`,
`snr_vs_k`, `speed`, `qmc_variance` and `discrete`, plots them (`plot`); see
`report.section`. The rest of the package:

- `settings`: `Settings` and the `PRESETS` full, quick and tiny;
- `run`: runs the sections and writes the report (`run_report`);
- `document`: report.json, report.md and the summary table;
- `formatting`: numbers as table cells and JSON values;
- `figures`: matplotlib helpers (the only module that imports it);
- `progress`: the progress printer;
- `timing`: the speed harness, shared with `benchmarks/speed_vs_tfp.py`;
- `scaling`: the growth sweeps of the speed section and their plot, shared
  with `benchmarks/performance_table.py`;
- `memory`: peak resident memory and CPU time, for the report's footer;
- `cli`: the command line.
"""

from tfp_vi_estimators.report.run import SECTIONS, run_report
from tfp_vi_estimators.report.section import Section, SectionResult
from tfp_vi_estimators.report.settings import PRESETS, Settings

__all__ = ["PRESETS", "SECTIONS", "Section", "SectionResult", "Settings", "run_report"]
