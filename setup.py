"""Install spec_cascade_jax: `pip install -e ".[test]"`."""

from setuptools import find_packages, setup

setup(
    name="spec_cascade_jax",
    version="0.1.0",
    description=(
        "Speculative cascades (Narasimhan et al., ICLR 2025) for T5 drafter/verifier pairs in JAX."
    ),
    packages=find_packages(include=["spec_cascade_jax", "spec_cascade_jax.*"]),
    package_data={"spec_cascade_jax": ["demo_data/**/*", "demo_data/*"]},
    include_package_data=True,
    python_requires=">=3.11,<3.12",
    install_requires=[
        "jax>=0.10.2,<0.11",
        "jaxlib>=0.10.2,<0.11",
        "flax>=0.12.8",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12.8",
        "seqio>=0.0.20",
        "tensorflow-datasets>=4.9.10",
        "importlib_resources>=6.0",
        "absl-py>=2.0",
        "gin-config>=0.5.0",
        "tensorstore>=0.1.60",
        "sentencepiece>=0.2.0",
        "sacrebleu>=2.4",
        "rouge-score>=0.1.2",
        "matplotlib>=3.8",
        "tqdm>=4.66",
        "safetensors>=0.4",
        "numpy>=1.26",
    ],
    extras_require={
        "test": [
            "pytest>=8.0",
            "pytest-xdist>=3.5",
            "torch==2.13.0",
            "transformers==5.24.0",
            "ruff>=0.6",
        ],
    },
    entry_points={"console_scripts": ["spec-cascade=spec_cascade_jax.main:run_main"]},
)
