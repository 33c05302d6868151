"""`python -m svsgan_tf.demo`: the README's main job, with no data set to download.

1. Separates a real song, the stem file that the `stempeg` wheel ships ("The Easton Ellises - Falcon
   69", a MUSDB18 test track), with the shipped pretrained model and prints its BSS Eval v4 scores
   against the true stems, beside the unprocessed mixture and the ideal ratio mask.
2. Trains Encoder, Encoder-GAN, RNN and RNN-GAN briefly on the embedded synthetic set and prints the
   paper's Table 1 layout (`python -m svsgan_tf.experiment`).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile

from svsgan_tf import cli


@contextlib.contextmanager
def example_track():
    """The stem file that ships with the stempeg wheel (an excerpt of "The Easton Ellises - Falcon 69"),
    as a MUSDB track with its own mixture stream; readable inside the `with` block."""
    from svsgan_tf.data.datasets import load_dataset
    from svsgan_tf.evaluation.bss import import_museval

    import_museval()
    import stempeg

    with tempfile.TemporaryDirectory() as folder:
        shutil.copy(stempeg.example_stem_path(), os.path.join(folder, os.path.basename(stempeg.example_stem_path())))
        (track,) = load_dataset(f"musdb:{folder}", "test", sample_rate=None, true_mixture=True).tracks
        yield track


def separate_example_song(out_dir: str, model: str | None, quiet: bool) -> str:
    """Separate the stempeg example song into out_dir/<song>/ and return the score table."""
    from svsgan_tf.audio.io import write_audio
    from svsgan_tf.evaluation.tracks import evaluate_tracks, markdown, summarize
    from svsgan_tf.separation.separator import Separator

    separator = Separator.from_directory(model)
    with example_track() as track:
        summary = summarize(evaluate_tracks([track], separator, quiet=quiet))
        stems = separator.separate(track.load()["mixture"], track.sample_rate, source=track.name)
    for name, audio in stems.items():
        write_audio(os.path.join(out_dir, track.name, f"{name}.wav"), audio, track.sample_rate)
    return (f"{track.name} ({track.nb_samples / track.sample_rate:.1f} s), separated into "
            f"{os.path.join(out_dir, track.name)}:\n\n" + markdown(summary).split("\n\n")[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m svsgan_tf.demo", description=__doc__.split(":", 1)[1].strip())
    parser.add_argument("--out", default="runs/demo", help="output folder (default %(default)s)")
    cli.add_model_argument(parser)
    parser.add_argument("--skip-experiment", action="store_true", help="only separate the real song")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    from svsgan_tf.shipped_models import DEFAULT_MODEL, resolve_model

    name = args.model or DEFAULT_MODEL
    args.model = resolve_model(args.model)              # an unknown name fails before TensorFlow starts
    cli.start_tensorflow(args.quiet)
    print(f"1. A real song separated with {name} (museval v4, median over 1 s frames)\n")
    print(separate_example_song(args.out, args.model, args.quiet), flush=True)
    if args.skip_experiment:
        return 0
    from svsgan_tf import experiment

    print("\n2. The paper's four models trained briefly on the embedded synthetic set\n", flush=True)
    return experiment.main(["--out", os.path.join(args.out, "experiment")] + (["--quiet"] if args.quiet else []))


def run() -> None:
    """Console-script entry point: `main` with one-line errors and exit codes."""
    cli.run(main)


if __name__ == "__main__":
    run()
