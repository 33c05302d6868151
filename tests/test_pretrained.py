"""The model shipped in the package: it loads by default and separates a real song."""
import os

import numpy as np
import pytest
import soundfile as sf

from svsgan_tf.models.model_io import PRETRAINED_DIR, default_model_path
from tests.conftest import shared_file

pytestmark = pytest.mark.skipif(not os.path.isfile(os.path.join(PRETRAINED_DIR, "config.json")),
                                reason="no pretrained model is shipped in this checkout")


def test_shipped_model_fits_the_size_limit():
    sizes = sum(os.path.getsize(os.path.join(folder, name))            # an ensemble's members included
                for folder, _, names in os.walk(PRETRAINED_DIR) for name in names)
    assert sizes <= 15 * 1024 * 1024


def test_shipped_model_beats_the_mixture_on_a_real_clip():
    from svsgan_tf.evaluation.bss import bss_eval
    from svsgan_tf.separation.separator import Separator

    folder = shared_file("fixtures", "falcon69")
    stems = {n: sf.read(os.path.join(folder, f"{n}.wav"), dtype="float32")[0]
             for n in ("mixture_sum", "vocals", "accompaniment")}
    separator = Separator.from_directory(default_model_path())
    estimates = separator.separate(stems["mixture_sum"], 44100)
    references = {"vocals": stems["vocals"], "accompaniment": stems["accompaniment"]}
    model = bss_eval(references, estimates, 44100)
    mixture = bss_eval(references, {t: stems["mixture_sum"] for t in references}, 44100)
    assert model["vocals"]["SDR"] > mixture["vocals"]["SDR"] + 3.0
    assert np.isfinite(model["accompaniment"]["SDR"])


def test_shipped_model_beats_the_mixture_on_the_stempeg_example_song():
    """Runs on every clean clone (stempeg ships the song; no ../shared/data needed): the main job's
    song. Measured (museval v4 vocals SDR, median over 1 s frames): the shipped model 1.12 dB, the
    unprocessed mixture -6.23 dB, the oracle 7.98 dB; the bounds leave 1 dB for other builds."""
    from svsgan_tf.demo import example_track
    from svsgan_tf.evaluation.tracks import evaluate_tracks, summarize
    from svsgan_tf.separation.separator import Separator

    with example_track() as track:
        summary = summarize(evaluate_tracks([track], Separator.from_directory(default_model_path()), quiet=True))
    model = summary["median"]["vocals"]["SDR"]
    mixture = summary["reference"]["mixture"]["median"]["vocals"]["SDR"]
    assert model - mixture > 7.35 - 1.0, (model, mixture)
    assert model > 1.12 - 1.0
