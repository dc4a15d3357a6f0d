"""Installs tf-autosam: ``pip install .`` (or ``pip install -e ".[test]"`` for development)."""

from setuptools import find_packages, setup

# Tested together on Python 3.11 (BUILD_NOTES.md, "Stack").
INSTALL_REQUIRES = [
    "tensorflow>=2.21,<2.22",
    "tf-keras>=2.21,<2.22",
    "tensorflow-recommenders>=0.7.7,<0.8",
    "tensorflow-datasets>=4.9.10,<5",
    "importlib_resources>=6",
    "keras-tuner[bayesian]>=1.4.8,<1.5",
    "tensorboard>=2.21,<2.22",
    "numpy>=1.26,<3",
    "pyarrow>=17,<27",
    "tensorflow-serving-api>=2.21,<2.22",
    "grpcio>=1.60,<2",
    "tqdm>=4.60",
    "matplotlib>=3.8,<4",
]

setup(
    name="tf-autosam",
    version="0.1.0",
    description="AutoSAM sequential recommendation: an RL behaviour sampler trained end to end with a SASRec backbone.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["tf_autosam", "tf_autosam.*", "input_pipeline", "input_pipeline.*", "serving", "serving.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest>=8,<10", "pytest-xdist>=3.6,<4"]},
    entry_points={"console_scripts": ["tf-autosam=tf_autosam.main:main"]},
)
