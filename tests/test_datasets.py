"""Data-set loaders on folders the tests build and on the real fixtures in ../shared/data."""
import numpy as np
import pytest
import soundfile as sf

from svsgan_tf.data.datasets import ArrayTrack, load_dataset, materialize
from svsgan_tf.errors import DataError
from tests.conftest import shared_file


def write_stems(folder, stems, rate=8000):
    folder.mkdir(parents=True, exist_ok=True)
    for name, audio in stems.items():
        sf.write(folder / f"{name}.wav", audio, rate)


def random_stems(rng, names, nb_samples=8000, channels=2):
    return {n: (0.05 * rng.standard_normal((nb_samples, channels))).astype(np.float32) for n in names}


def test_dsd100_layout(tmp_path, rng):
    for split in ("Dev", "Test"):
        stems = random_stems(rng, ("vocals", "bass", "drums", "other"))
        write_stems(tmp_path / "Sources" / split / f"{split} song", stems)
        write_stems(tmp_path / "Mixtures" / split / f"{split} song", {"mixture": sum(stems.values())})
    report = load_dataset(str(tmp_path), "test", sample_rate=8000, true_mixture=True)
    (track,) = report.tracks
    loaded = track.load()
    np.testing.assert_allclose(loaded["mixture"], loaded["vocals"] + loaded["accompaniment"], atol=1e-3)
    assert track.name == "Test song" and loaded["vocals"].shape == (8000, 2)


def test_materialized_tracks_keep_the_data_sets_own_mixture(tmp_path, rng):
    stems = random_stems(rng, ("vocals", "bass", "drums", "other"))
    write_stems(tmp_path / "Sources" / "Test" / "song", stems)
    mix = 0.5 * sum(stems.values())                        # a mix that is not the sum of the stems
    write_stems(tmp_path / "Mixtures" / "Test" / "song", {"mixture": mix})
    report = load_dataset(str(tmp_path), "test", sample_rate=None, true_mixture=True)
    (track,), skipped = materialize(report.tracks, quiet=True)
    assert skipped == [] and isinstance(track, ArrayTrack)
    np.testing.assert_allclose(track.load()["mixture"], mix, atol=1e-4)
    (summed,), _ = materialize(load_dataset(str(tmp_path), "test", sample_rate=None).tracks, quiet=True)
    np.testing.assert_allclose(summed.load()["mixture"], sum(stems.values()), atol=1e-3)


def test_musdb_hq_layout_and_resampling(tmp_path, rng):
    stems = random_stems(rng, ("vocals", "bass", "drums", "other"), nb_samples=16000)
    write_stems(tmp_path / "train" / "Artist - Song", stems, rate=16000)
    (track,) = load_dataset(f"musdb:{tmp_path}", "train", sample_rate=8000).tracks
    assert track.nb_samples == 8000 and track.sample_rate == 8000
    accompaniment = stems["bass"] + stems["drums"] + stems["other"]
    native = load_dataset(f"musdb:{tmp_path}", "train", sample_rate=None).tracks[0].load()
    np.testing.assert_allclose(native["accompaniment"], accompaniment, atol=1e-3)


def test_folder_pairs_with_and_without_accompaniment(tmp_path, rng):
    stems = random_stems(rng, ("vocals", "accompaniment"))
    write_stems(tmp_path / "a", {"mixture": stems["vocals"] + stems["accompaniment"], "vocals": stems["vocals"]})
    write_stems(tmp_path / "b", stems)
    tracks = load_dataset(str(tmp_path), "train", sample_rate=8000).tracks
    assert [t.name for t in tracks] == ["a", "b"]
    np.testing.assert_allclose(tracks[0].load()["accompaniment"], stems["accompaniment"], atol=1e-3)


def test_bad_tracks_are_skipped_and_named(tmp_path, rng):
    write_stems(tmp_path / "good", random_stems(rng, ("vocals", "accompaniment")))
    stems = random_stems(rng, ("vocals", "accompaniment"))
    stems["accompaniment"] = stems["accompaniment"][:4000]
    write_stems(tmp_path / "short", stems)
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "vocals.wav").write_bytes(b"garbage" * 20)
    sf.write(tmp_path / "corrupt" / "mixture.wav", np.zeros((800, 2)), 8000)
    (tmp_path / "nothing").mkdir()
    report = load_dataset(str(tmp_path), "train", sample_rate=8000)
    assert [t.name for t in report.tracks] == ["good"]
    assert len(report.skipped) == 3
    assert any("short" in s and "differ in length" in s for s in report.skipped)
    assert any("corrupt/vocals.wav" in s and "cannot decode" in s for s in report.skipped)
    assert any("nothing" in s and "needs a vocals file" in s for s in report.skipped)


def test_missing_or_empty_data_sets_raise_data_errors(tmp_path):
    with pytest.raises(DataError, match="data set folder not found"):
        load_dataset(str(tmp_path / "absent"))
    with pytest.raises(DataError, match="no usable"):
        load_dataset(str(tmp_path))
    (tmp_path / "Mixtures").mkdir()
    (tmp_path / "Sources").mkdir()
    with pytest.raises(DataError, match="Sources/Dev"):
        load_dataset(str(tmp_path), "train")


def test_mir1k_channels_are_split():
    path = shared_file("fixtures", "mir1k_amy_3_01.wav")
    raw, rate = sf.read(path, dtype="float32")
    import os
    (track,) = [t for t in load_dataset(f"mir1k:{os.path.dirname(path)}", "x", sample_rate=None).tracks
                if t.name == "mir1k_amy_3_01"]
    stems = track.load()
    assert track.sample_rate == rate == 16000 and stems["vocals"].shape == (raw.shape[0], 1)
    np.testing.assert_allclose(stems["accompaniment"][:, 0], raw[:, 0])
    np.testing.assert_allclose(stems["vocals"][:, 0], raw[:, 1])


def test_musdb_stem_files_decode_with_the_bundled_ffmpeg():
    folder = shared_file("musdb18-7s")
    report = load_dataset(f"musdb:{folder}", "test", sample_rate=None, true_mixture=True)
    assert len(report.tracks) == 50 and not report.skipped
    stems = report.tracks[0].load()
    assert stems["vocals"].shape[1] == 2 and report.tracks[0].sample_rate == 44100
    # the AAC mix stream is close to, not exactly, the sum of the stems
    error = np.abs(stems["mixture"] - stems["vocals"] - stems["accompaniment"]).max()
    assert 0 < error < 0.2


def test_stempeg_example_file_without_the_shared_folder(tmp_path):
    import os
    import shutil

    from svsgan_tf.evaluation.bss import import_museval

    import_museval()
    import stempeg

    shutil.copy(stempeg.example_stem_path(), tmp_path / "example.stem.mp4")
    (track,) = load_dataset(f"musdb:{tmp_path}", "test", sample_rate=22050).tracks
    excerpt = track.read(22050, 22050)
    assert excerpt["vocals"].shape == (22050, 2) and np.abs(excerpt["vocals"]).max() > 0
    assert os.path.getsize(tmp_path / "example.stem.mp4") > 0


def test_materialize_decodes_into_memory(tmp_path, rng):
    write_stems(tmp_path / "x", random_stems(rng, ("vocals", "accompaniment")))
    tracks, skipped = materialize(load_dataset(str(tmp_path), sample_rate=8000).tracks, quiet=True)
    assert isinstance(tracks[0], ArrayTrack) and not skipped
