"""Packaging for tfp_vi_estimators.

Install for development with ``pip install -e '.[test,docs,report]'`` (``make venv``
does exactly that inside ``.venv``).
"""

from pathlib import Path

from setuptools import find_packages, setup

README = Path(__file__).resolve().parent / "README.md"

setup(
    name="tfp_vi_estimators",
    version="0.1.0",
    description=(
        "Monte Carlo variational losses with selectable gradient estimators: "
        "a drop-in, more correct replacement for "
        "tfp.vi.monte_carlo_variational_loss."
    ),
    long_description=README.read_text(encoding="utf-8") if README.exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["tfp_vi_estimators", "tfp_vi_estimators.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "tensorflow-probability[tf]>=0.24",
        "numpy",
        "absl-py",
    ],
    extras_require={
        "test": [
            "pytest",
            "hypothesis",
            "arviz",
            "import-linter",
            "ruff",
            "mlxtend",
            "scikit-learn",
            "matplotlib",
            "inference_gym",
        ],
        "docs": [
            "mkdocs",
            "mkdocs-material",
            "mkdocstrings[python]",
        ],
        "report": [
            "matplotlib",
            # Posterior targets with known answers for the `accuracy` section
            # and benchmarks/posterior_accuracy.py; never needed by the loss.
            "inference_gym",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Intended Audience :: Science/Research",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
