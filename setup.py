"""Install the ad-policy ensemble: `pip install -e .` gives the packages and the `adpolicy` CLI."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def _requirements(name: str) -> list[str]:
    lines = (HERE / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="adpolicy-ensemble",
    version="0.1.0",
    description=(
        "Multimodal ad-creative compliance model: one PyTorch module, one traced graph, "
        "one TorchServe handler."
    ),
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["ensemble*", "encoders*", "export*", "serve*"]),
    package_data={
        "ensemble": ["configs/*.yaml", "default/*", "training/corpora/*"],
        "encoders": ["data/*"],
        "export": ["data/*"],
    },
    install_requires=_requirements("requirements.txt"),
    extras_require={
        "dev": _requirements("requirements-dev.txt"),
        "ray": _requirements("requirements-ray.txt"),
    },
    entry_points={"console_scripts": ["adpolicy=ensemble.cli:main"]},
)
