"""The sizes of every report section, and the full, quick and tiny presets."""

import dataclasses

__all__ = ["PRESETS", "Settings"]


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of every section; `PRESETS` holds the full, quick and tiny ones.

    Each field belongs to the section its prefix names (`fig1_` to `stl_fig1`,
    `snr_` to `snr_vs_k`, ...); `seed` seeds every section.
    """

    name: str = "full"
    seed: int = 0
    # Gradient draws vectorized at once by the diagnostics (`snr_vs_k`,
    # `variance`); memory grows with it, not with the number of draws.
    gradient_chunk_size: int = 64
    # Roeder et al. Fig. 1: dimension, SGD steps and rate, KL recorded every
    # `fig1_record_every` steps (one compiled loop per record); an Adam run
    # with `fig1_adam_steps` > 0 shows what an adaptive optimizer does.
    fig1_dim: int = 100
    fig1_steps: int = 20_000
    fig1_learning_rate: float = 0.003
    fig1_record_every: int = 100
    fig1_adam_steps: int = 10_000
    fig1_adam_learning_rate: float = 0.001
    # SNR against K on the amortized Gaussian model.
    snr_ks: tuple = (1, 4, 16, 64)
    snr_dim: int = 20
    snr_num_data: int = 16
    snr_perturbation: float = 0.01
    snr_draws: int = 40_000
    # Variance table (None: every configuration of every problem).
    variance_draws: int = 5000
    variance_max_configs: int | None = None
    # Bias table: paired per-draw differences, `bias_chunk_size` draws at once.
    bias_draws: int = 200_000
    bias_ks: tuple = (1, 4)
    bias_chunk_size: int = 16_384
    # Speed table: rounds x steps per configuration; `None` configs: all,
    # `None` estimators: every `GradientEstimators` member (by name otherwise).
    speed_rounds: int = 15
    speed_steps: int = 10
    speed_max_configs: int | None = None
    speed_estimators: tuple | None = None
    # Growth: step time against sample_size and dimension, diagnostics memory
    # against the number of draws (`report.scaling`).
    speed_sample_sizes: tuple = (16, 64, 256, 1024)
    speed_dims: tuple = (10, 40, 160)
    speed_memory_draws: tuple = (256, 1024, 4096)
    # PSIS k-hat of fitted surrogates (`report.psis_khat`): fits of
    # `psis_steps` Adam steps, k-hat from `psis_num_draws` draws; `None` max:
    # every target, surrogate kind and estimator configuration.
    psis_steps: int = 1000
    psis_learning_rate: float = 0.05
    psis_num_draws: int = 8000
    psis_gaussian_dim: int = 10
    psis_logistic_dim: int = 5
    psis_logistic_data: int = 100
    psis_max_targets: int | None = None
    psis_max_surrogates: int | None = None
    psis_max_configs: int | None = None
    # iid against randomized quasi-Monte Carlo gradient variance across S
    # (`report.qmc_variance`): independent seeds per point.
    qmc_dim: int = 10
    qmc_sample_sizes: tuple = (4, 8, 16, 32, 64, 128, 256, 512, 1024)
    qmc_repeats: int = 100
    # Posterior accuracy on Inference Gym targets (`report.accuracy`, issue
    # 21): `None` targets / arms: all of `accuracy_targets.TARGET_NAMES` /
    # `accuracy_fits.ARMS` (arms by label otherwise). Each arm fits
    # `accuracy_seeds` replicates for `accuracy_steps` Adam steps of
    # `accuracy_draws_per_step` target evaluations; full-rank families up to
    # `accuracy_max_full_rank_dim` parameters; step times from
    # `accuracy_timing_rounds` alternating rounds of about
    # `accuracy_timing_seconds` each.
    accuracy_targets: tuple | None = None
    accuracy_families: tuple = ("mean-field", "full-rank", "affine")
    accuracy_arms: tuple | None = None
    accuracy_steps: int = 2000
    accuracy_seeds: int = 5
    accuracy_learning_rate: float = 0.02
    accuracy_draws_per_step: int = 8
    accuracy_max_full_rank_dim: int = 120
    accuracy_jit_compile: bool = True
    accuracy_psis_draws: int = 4000
    accuracy_checkpoints: int = 16
    accuracy_timing_seconds: float = 0.5
    accuracy_timing_rounds: int = 5
    # Pathfinder beside the arms (`report.accuracy_pathfinder`, issue 24):
    # runs of each number of paths (empty: none), XLA or not, and a fit
    # started from its Gaussian per family.
    accuracy_pathfinder_paths: tuple = (1, 8)
    accuracy_pathfinder_jit_compile: bool = True
    # Discrete latents (`report.discrete`, issue 23): the RELAX toy at each
    # theta, `discrete_toy_draws` gradients per estimator, RELAX's control
    # variate trained `discrete_relax_steps` Adam steps; the Bernoulli VAE
    # (`report.discrete_vae`) per comparison, kind, arm (`None`: all, by
    # label otherwise) and seed.
    discrete_toy_thetas: tuple = (0.5, 0.9)
    discrete_toy_draws: int = 20_000
    discrete_relax_steps: int = 300
    discrete_vae_comparisons: tuple = ("elbo", "multi_sample")
    discrete_vae_kinds: tuple = ("linear", "nonlinear")
    discrete_vae_arms: tuple | None = None
    discrete_vae_seeds: int = 2
    discrete_vae_steps: int = 2000
    discrete_vae_record_every: int = 250
    discrete_vae_num_train: int = 4000
    discrete_vae_num_test: int = 300
    discrete_vae_latents: int = 200
    discrete_vae_variance_draws: int = 32
    discrete_vae_jit_compile: bool = True


_FULL = Settings()

# The smaller presets, side by side: field -> (quick, tiny). `_FULL` keeps the
# full value. `quick` runs every section in minutes; `tiny` (for tests) runs
# every code path in seconds per section, and its numbers mean nothing.
_SMALLER = {
    "fig1_dim": (_FULL, 8),
    "fig1_steps": (5000, 100),
    "fig1_learning_rate": (_FULL, 0.01),
    "fig1_record_every": (50, 25),
    "fig1_adam_steps": (0, 50),
    "fig1_adam_learning_rate": (_FULL, 0.01),
    "snr_ks": (_FULL, (1, 4)),
    "snr_dim": (_FULL, 3),
    "snr_num_data": (_FULL, 2),
    "snr_draws": (8000, 50),
    "variance_draws": (2000, 20),
    "variance_max_configs": (_FULL, 1),
    "bias_draws": (50_000, 200),
    "bias_ks": (_FULL, (1, 2)),
    "speed_rounds": (2, 1),
    "speed_steps": (5, 1),
    "speed_max_configs": (2, 1),
    # quick: SCORE_FUNCTION costs as REPARAMETERIZATION does here, and its
    # two XLA compilations a row are a quarter of the section's time.
    "speed_estimators": (
        ("REPARAMETERIZATION", "DOUBLY_REPARAMETERIZED", "VIMCO"),
        ("DOUBLY_REPARAMETERIZED",),
    ),
    "speed_sample_sizes": ((16, 256), (4,)),
    "speed_dims": ((10, 80), (2,)),
    "speed_memory_draws": ((256, 2048), (8,)),
    "psis_steps": (300, 20),
    "psis_num_draws": (2000, 100),
    "psis_gaussian_dim": (_FULL, 3),
    "psis_logistic_dim": (_FULL, 2),
    "psis_logistic_data": (_FULL, 10),
    "psis_max_surrogates": (_FULL, 1),
    "psis_max_configs": (_FULL, 1),
    "qmc_dim": (_FULL, 3),
    "qmc_sample_sizes": ((4, 8, 16, 32, 64, 128, 256), (4, 16)),
    "qmc_repeats": (30, 4),
    # quick: the smallest informative target, five arms, the full protocol
    # (compilation is most of the cost; steps are cheap). tiny: no XLA.
    "accuracy_targets": (("EightSchools",), ("Banana",)),
    "accuracy_families": (("mean-field",), ("mean-field",)),
    "accuracy_arms": (
        (
            "tfp.vi",
            "DOUBLY_REPARAMETERIZED",
            "adaptive",
            "REPARAMETERIZATION rqmc",
            "DOUBLY_REPARAMETERIZED K=4",
        ),
        ("tfp.vi", "DOUBLY_REPARAMETERIZED", "adaptive"),
    ),
    "accuracy_steps": (_FULL, 3),
    "accuracy_seeds": (_FULL, 2),
    "accuracy_jit_compile": (_FULL, False),
    "accuracy_psis_draws": (1000, 20),
    "accuracy_checkpoints": (12, 3),
    "accuracy_timing_seconds": (0.2, 0.01),
    "accuracy_timing_rounds": (3, 1),
    # Without XLA Pathfinder compiles in about 2.5 s a program (EightSchools)
    # against 10 s, and its runs take 0.05-0.3 s against 0.01-0.05 s.
    "accuracy_pathfinder_paths": (_FULL, (1, 2)),
    "accuracy_pathfinder_jit_compile": (False, False),
    # quick: the linear model, the arms of the papers' claims, one seed, a
    # few hundred steps (the early directions only), no XLA (for 300 steps
    # its compilations cost more than they save: 24 s of CPU against 41 s).
    # tiny: 8 latents.
    "discrete_toy_thetas": (_FULL, (0.9,)),
    "discrete_toy_draws": (10_000, 200),
    "discrete_relax_steps": (100, 2),
    "discrete_vae_kinds": (("linear",), ("linear",)),
    "discrete_vae_arms": (
        (
            "REINFORCE LOO",
            "DisARM",
            "RELAX",
            "VIMCO (2 x K=4)",
            "local DisARM (pair x K=4)",
        ),
        ("DisARM", "local DisARM (pair x K=4)"),
    ),
    "discrete_vae_seeds": (1, 1),
    "discrete_vae_steps": (300, 4),
    "discrete_vae_record_every": (100, 2),
    "discrete_vae_num_train": (2000, 100),
    "discrete_vae_num_test": (100, 20),
    "discrete_vae_latents": (_FULL, 8),
    "discrete_vae_variance_draws": (8, 3),
    "discrete_vae_jit_compile": (False, False),
}


def _smaller_preset(name, column):
    changes = {
        field: values[column]
        for field, values in _SMALLER.items()
        if values[column] is not _FULL
    }
    return dataclasses.replace(_FULL, name=name, **changes)


PRESETS = {
    "full": _FULL,
    "quick": _smaller_preset("quick", 0),
    "tiny": _smaller_preset("tiny", 1),
}
