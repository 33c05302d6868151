"""Chunked separation: the plan and gains, the streaming join, and chunked == one-shot for every generator."""
import numpy as np
import pytest

from conftest import tiny_config
from svsgan_tf.separation.chunking import ChunkJoiner, ChunkLayout, chunk_weights, join_chunks, plan_chunks, scaled_layout


def test_chunk_plan_and_crossfade_gains():
    layout = ChunkLayout(chunk=2048, margin=256, crossfade=256, align=128).check()
    plan = layout.plan(10_000)
    assert plan[0][0] == 0 and plan[-1][1] == 10_000
    assert all(start % 128 == 0 for start, _ in plan) and all(stop - start <= 2048 for start, stop in plan)
    assert all(b[0] == a[1] - layout.overlap for a, b in zip(plan, plan[1:-1]))
    gains = np.zeros(10_000)
    for index, (start, stop) in enumerate(plan):
        gains[start:stop] += chunk_weights(stop - start, index == 0, index == len(plan) - 1, 256, 256)
    np.testing.assert_allclose(gains, 1.0, atol=1e-6)
    assert plan_chunks(500, 2048, 1280) == [(0, 500)]
    with pytest.raises(ValueError, match="too short"):
        ChunkLayout(chunk=1000, margin=400, crossfade=256, align=128).check()


def test_a_rounded_step_keeps_both_crossfades_on_the_same_samples():
    """A chunk length that is no multiple of the alignment: the plan shortens chunks to step + overlap."""
    layout = ChunkLayout(chunk=2100, margin=200, crossfade=100, align=128).check()
    signal = np.random.default_rng(0).standard_normal((9000, 2)).astype(np.float32)
    plan = layout.plan(9000)
    joined = join_chunks([signal[start:stop].T for start, stop in plan], plan, layout.margin, layout.crossfade)
    np.testing.assert_allclose(joined.T, signal, atol=1e-6)


def test_the_streaming_join_holds_one_chunk_and_yields_every_sample_once():
    layout = ChunkLayout(chunk=1024, margin=64, crossfade=64, align=32).check()
    signal = np.arange(5000, dtype=np.float32)[:, None]
    plan = layout.plan(5000)
    joiner = ChunkJoiner(plan, layout.margin, layout.crossfade)
    blocks = [joiner.push(signal[start:stop]) for start, stop in plan] + [joiner.finish()]
    assert all(len(block) <= 1024 for block in blocks)
    np.testing.assert_allclose(np.concatenate(blocks), signal, rtol=1e-6)
    with pytest.raises(ValueError, match="expected"):
        ChunkJoiner(plan, 64, 64).push(signal[:10])


def test_a_layout_at_another_rate_starts_on_the_model_grid():
    layout = scaled_layout(ChunkLayout(chunk=32000, margin=256, crossfade=768, align=128), 11025, 8000, 72)
    for start, _ in layout.plan(10 ** 6):
        assert start * 8000 % 11025 == 0 and (start * 8000 // 11025) % 128 == 0
    assert layout.margin >= 256 * 11025 / 8000 + 72


@pytest.mark.parametrize("overrides", [
    {"model.generator": "encoder"},
    {"model.generator": "encoder", "separation.mask_smoothing": 3, "separation.hop_length": 64},
    {"model.generator": "encoder", "model.nb_channels": 2, "model.swap_average": True},
    {"model.generator": "rnn"},
    {"model.generator": "rnn", "model.bidirectional": True},
    {"model.generator": "unet"},
    {"model.generator": "unet", "model.unet_stems": 2, "model.unet_segment_frames": 16, "model.nb_channels": 2,
     "model.unet_mask_extension": "zeros", "model.compress_input": False},          # Spleeter's layout
], ids=lambda o: "-".join(f"{k.split('.')[-1]}={v}" for k, v in o.items()))
@pytest.mark.parametrize("rate", [8000, 11025])
def test_chunked_separation_equals_one_shot(overrides, rate):
    """Chunks of 4 s against the whole 30 s song, at the model's rate and resampled; every generator."""
    from svsgan_tf.models import build_generator
    from svsgan_tf.separation.separator import Separator

    config = tiny_config(**overrides)
    generator = build_generator(config)
    generator.create_weights()
    audio = (np.random.default_rng(0).standard_normal((rate * 30, 2)) * 0.1).astype(np.float32)
    chunked = Separator(config, generator, chunk_seconds=4.0)
    assert len(chunked.chunk_layout().plan(8000 * 30)) >= 2
    whole = Separator(config, generator, chunk_seconds=None).separate(audio, rate)
    parts = chunked.separate(audio, rate)
    for name in ("vocals", "accompaniment"):
        assert parts[name].shape == audio.shape
        assert np.abs(parts[name] - whole[name]).max() < 1e-4


def test_the_chunk_context_covers_each_generator_and_setting():
    from svsgan_tf.models import build_generator
    from svsgan_tf.separation.separator import Separator

    def context(griffin_lim=0, **overrides):
        config = tiny_config(**overrides)
        return Separator(config, build_generator(config), griffin_lim).chunk_context

    n_fft, hop = 256, 128
    assert context() == (n_fft, hop)                                     # the frames over a sample
    assert context(**{"separation.hop_length": 64}) == (n_fft, 64)              # the Separator's hop
    assert context(**{"separation.mask_smoothing": 5})[0] == n_fft + 2 * hop
    assert context(griffin_lim=4)[0] == n_fft + 4 * 2 * n_fft
    assert context(**{"model.generator": "rnn"})[0] == n_fft + 256 * hop    # the LSTM's warm-up
    margin, align = context(**{"model.generator": "unet"})               # unet_filters: 3 levels
    assert align == 8 * hop and margin == n_fft + (5 * 7 + 4) * hop


def test_every_valid_layout_has_gains_adding_up_to_one():
    """Brute force over small layouts: a chunk's two crossfades never meet (the step is checked)."""
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(5000):
        margin, crossfade, align, chunk = (int(v) for v in rng.integers([0, 1, 1, 1], [30, 30, 16, 200]))
        layout = ChunkLayout(chunk, margin, crossfade, align)
        try:
            layout.check()
        except ValueError:
            continue
        checked += 1
        nb_samples = int(rng.integers(1, 600))
        plan = layout.plan(nb_samples)
        gains = np.zeros(nb_samples)
        for index, (start, stop) in enumerate(plan):
            gains[start:stop] += chunk_weights(stop - start, index == 0, index == len(plan) - 1, margin, crossfade)
        np.testing.assert_allclose(gains, 1.0, atol=1e-5)
    assert checked > 1000


def test_a_rate_that_maps_onto_the_model_grid_rarely_still_separates():
    """48 kHz into a 44.1 kHz U-Net: the aligned step is ~5 million samples; a short file is one chunk,
    a long one gets a chunk long enough for the alignment."""
    from svsgan_tf.separation.chunking import resample_margin, separation_layout

    layout = scaled_layout(separation_layout(4096 + 319 * 512, 512 * 64, 44100), 48000, 44100,
                           resample_margin(48000, 44100))
    with pytest.raises(ValueError):
        layout.check()
    fitted = layout.fitted().check()
    assert fitted.step >= fitted.crossfade and all(s % fitted.align == 0 for s, _ in fitted.plan(10 ** 8))


class _SlowIdentity:
    """An engine of the separate_stream interface whose stems are its input, slowly: it logs each call."""

    sample_rate, min_samples = 8000, 64

    def __init__(self, events):
        self.events = events

    def chunk_layout(self, nb_channels=2):
        return ChunkLayout(chunk=2048, margin=64, crossfade=64, align=32)

    def separate_chunk(self, waveform):
        import time

        self.events.append(("separate", waveform.shape[1]))
        time.sleep(0.05)
        self.events.append(("separated", waveform.shape[1]))
        return {"vocals": waveform, "accompaniment": 0.5 * waveform}


def test_the_next_chunk_is_read_while_one_is_separated_and_the_stems_are_unchanged(rng):
    import threading

    from svsgan_tf.separation.stream import separate_stream

    audio = rng.normal(size=(9000, 2)).astype(np.float32)
    events, threads = [], set()

    def read(start, stop):
        threads.add(threading.current_thread().name)
        events.append(("read", start))
        return audio[start:stop]

    blocks = list(separate_stream(_SlowIdentity(events), read, audio.shape[0], 2, 8000, "x.wav"))
    np.testing.assert_allclose(np.concatenate([b["vocals"] for b in blocks]), audio, atol=1e-6)
    np.testing.assert_allclose(np.concatenate([b["accompaniment"] for b in blocks]), 0.5 * audio, atol=1e-6)
    reads = [i for i, event in enumerate(events) if event[0] == "read"]
    ends = [i for i, event in enumerate(events) if event[0] == "separated"]
    assert len(reads) == len(ends) >= 4
    # chunk k + 1 was read before chunk k's separation ended, in a thread of its own
    assert all(reads[k + 1] < ends[k] for k in range(len(ends) - 1)), events
    assert all(name.startswith("read-ahead") for name in threads)


def test_a_read_error_of_a_later_chunk_is_raised_when_that_chunk_is_reached(rng):
    from svsgan_tf.errors import AudioError
    from svsgan_tf.separation.stream import separate_stream

    audio = rng.normal(size=(9000, 2)).astype(np.float32)
    events = []

    def read(start, stop):
        if start > 4000:
            raise AudioError("x.wav", "cannot decode")
        return audio[start:stop]

    stream = separate_stream(_SlowIdentity(events), read, audio.shape[0], 2, 8000, "x.wav")
    first = next(stream)                                      # the chunks before the bad one come through
    assert first["vocals"].shape[1] == 2
    with pytest.raises(AudioError, match="^x.wav: cannot decode"):
        list(stream)


def test_a_range_read_out_of_order_waits_for_the_read_ahead_and_stops_it():
    import threading
    import time

    from svsgan_tf.separation.stream import Ahead

    busy, overlaps, lock = [], [], threading.Lock()

    def read(start, stop):
        with lock:
            overlaps.append(len(busy))
            busy.append(start)
        time.sleep(0.05)
        with lock:
            busy.remove(start)
        return np.full((stop - start, 1), start, np.float32)

    with Ahead(read, [(0, 10), (10, 20), (20, 30)], "read-ahead") as reader:
        assert reader(0, 10)[0, 0] == 0                  # in order: chunk (10, 20) is now read ahead
        assert reader(5, 15)[0, 0] == 5                  # out of order: read once (10, 20) is done
        assert reader(20, 30)[0, 0] == 20 and reader.pending is None
    assert max(overlaps) == 0                            # never two reads at once
