"""The two-phase train_step: which weights move, what the logs carry, a tiny overfit, the data pipeline."""
import json

import numpy as np
import pytest
import tensorflow as tf

from svsgan_tf.data import pipeline as data_lib
from svsgan_tf.errors import ConfigError
from svsgan_tf.data.synthetic import make_tracks
from svsgan_tf.training.fit import build_svsgan, train
from tests.conftest import tiny_config


def tiny_batches(config, nb_batches=2):
    tracks = make_tracks(2, seed=3, duration=1.0, sample_rate=config.stft.sample_rate)
    return list(data_lib.training_dataset(tracks, config).take(nb_batches))


def snapshot(model):
    return [v.numpy().copy() for v in model.trainable_variables]


def changed(before, model):
    return any(not np.array_equal(a, v.numpy()) for a, v in zip(before, model.trainable_variables))


@pytest.mark.parametrize("generator", ["encoder", "rnn", "unet"])
def test_phase_one_moves_only_g_and_phase_two_moves_both(generator):
    config = tiny_config(**{"model.generator": generator})
    mixture, vocals = tiny_batches(config, 1)[0]
    model = build_svsgan(config)

    g_before, d_before = snapshot(model.generator), snapshot(model.discriminator)
    model.set_phase("pretrain")
    logs = model.train_step((mixture, vocals))
    assert changed(g_before, model.generator) and not changed(d_before, model.discriminator)
    assert set(logs) == {"kl"}

    g_before, d_before = snapshot(model.generator), snapshot(model.discriminator)
    model.set_phase("gan")
    logs = model.train_step((mixture, vocals))
    assert changed(g_before, model.generator) and changed(d_before, model.discriminator)
    assert {"d_loss", "g_loss", "kl", "g_adversarial"} <= set(logs)


def test_fit_logs_carry_both_phases(tmp_path):
    result = train(tiny_config(), str(tmp_path), verbose=0, tensorboard=True)
    history = result.history
    assert len(history["kl"]) == 2 and len(history["d_loss"]) == 1 and len(history["g_loss"]) == 1
    assert "val_kl" in history
    assert (tmp_path / "model" / "generator.weights.h5").exists()
    assert (tmp_path / "model" / "discriminator.weights.h5").exists()
    saved = (tmp_path / "config.json").read_text()
    assert '"git_commit"' in saved and '"seed"' in saved
    assert any((tmp_path / "logs").iterdir())


def test_tiny_model_overfits_a_tiny_excerpt():
    config = tiny_config(**{"train.g_learning_rate": 3e-3})
    mixture, vocals = tiny_batches(config, 1)[0]
    model = build_svsgan(config)
    model.set_phase("pretrain")
    first = float(model.train_step((mixture, vocals))["kl"])
    for _ in range(300):
        model.kl_tracker.reset_state()
        last = float(model.train_step((mixture, vocals))["kl"])
    assert last < first / 10, (first, last)


def test_squared_error_training_logs_both_losses_and_overfits():
    config = tiny_config(**{"train.loss": "mse", "train.g_learning_rate": 3e-3})
    mixture, vocals = tiny_batches(config, 1)[0]
    model = build_svsgan(config)
    model.set_phase("pretrain")
    first = model.train_step((mixture, vocals))
    assert set(first) == {"kl", "mse"}
    for _ in range(300):
        for tracker in model.supervised_trackers:
            tracker.reset_state()
        last = model.train_step((mixture, vocals))
    assert float(last["mse"]) < float(first["mse"]) / 10, (first, last)
    model.set_phase("gan")
    assert {"kl", "mse", "g_loss", "d_loss"} <= set(model.train_step((mixture, vocals)))


@pytest.mark.parametrize("loss", ["kl", "mse"])
def test_g_steps_descend_the_configured_loss_in_both_phases(loss, tmp_path):
    from svsgan_tf.models.losses import generalized_kl, supervised_loss

    # plain SGD with a large rate: each weight moves by -rate * gradient, well above float32 rounding
    config = tiny_config(**{"train.loss": loss, "train.optimizer": "sgd", "data.shuffle_frames": False,
                            "train.adversarial_weight": 0.0, "train.g_learning_rate": 0.1,
                            "train.gan_g_learning_rate": 0.1})
    mixture, vocals = tiny_batches(config, 1)[0]
    model = build_svsgan(config)
    generator = model.generator

    def gradient(loss_fn):
        with tf.GradientTape() as tape:
            value = tf.nn.compute_average_loss(loss_fn(vocals, model(mixture)))
        return [g.numpy() for g in tape.gradient(value, generator.trainable_variables)]

    for phase in ("pretrain", "gan"):            # with adversarial weight 0, the GAN step is the loss alone
        model.set_phase(phase)
        expected = gradient(lambda v, e: supervised_loss(loss, v, e))
        kl = gradient(generalized_kl)
        before = snapshot(generator)
        model.train_step((mixture, vocals))
        rate = float(model.g_optimizer.learning_rate.numpy())
        steps = [(b - a.numpy()) / rate for b, a in zip(before, generator.trainable_variables)]
        for step, grad in zip(steps, expected):
            np.testing.assert_allclose(step, grad, rtol=1e-3, atol=1e-3 * np.abs(grad).max() + 1e-9)
        assert not all(np.allclose(step, g, rtol=1e-2, atol=1e-8) for step, g in zip(steps, kl))
    history = train(config, str(tmp_path), verbose=0).history
    assert {"kl", loss, "val_kl", f"val_{loss}"} <= set(history)
    header = (tmp_path / "history.csv").read_text().splitlines()[0].split(",")
    assert {loss, f"val_{loss}"} <= set(header)


def test_phase_sensitive_target_is_the_vocals_part_in_phase_with_the_mixture():
    config = tiny_config(**{"data.augment": False})
    tracks = make_tracks(1, seed=4, duration=1.0, sample_rate=config.stft.sample_rate)
    plain = list(data_lib.validation_dataset(tracks, config).unbatch())
    sensitive = list(data_lib.validation_dataset(tracks, config.replace(**{"data.target": "phase_sensitive"})).unbatch())
    nb_samples = data_lib.excerpt_samples(config.stft, config.data.excerpt_frames)
    track = tracks[0]
    n_fft, hop = config.stft.n_fft, config.stft.hop_length
    window = np.hanning(n_fft + 1)[:-1]                                           # periodic Hann
    spectrum = lambda x: np.stack([np.fft.rfft(x[i * hop:i * hop + n_fft] * window)
                                   for i in range(config.data.excerpt_frames)])
    mixture = spectrum(track.mixture[:nb_samples, 0].astype(np.float64))
    vocals = spectrum(track.vocals[:nb_samples, 0].astype(np.float64))
    expected = np.clip(np.abs(vocals) * np.cos(np.angle(vocals) - np.angle(mixture)), 0, np.abs(mixture))
    np.testing.assert_allclose(sensitive[0][0], plain[0][0])                      # the same mixture
    np.testing.assert_allclose(sensitive[0][1], expected, atol=1e-3 * np.abs(mixture).max())
    assert np.all(sensitive[0][1].numpy() <= plain[0][1].numpy() + 1e-4)          # never above |S|


def test_pipeline_shapes_and_frame_shuffling():
    config = tiny_config(**{"data.excerpt_frames": 8})
    tracks = make_tracks(3, seed=1, duration=1.0, sample_rate=8000)
    dataset = data_lib.training_dataset(tracks, config)
    batches = list(dataset)
    assert len(batches) == dataset.cardinality().numpy() == 3 * 2 * 4 // 4
    mixture, vocals = batches[0]
    assert mixture.shape == vocals.shape == (4, 8, 129)
    assert np.all(vocals.numpy() >= 0)
    # the encoder's examples are frames shuffled across songs: consecutive frames rarely overlap
    # (hop = n_fft / 2), the RNN's are contiguous excerpts whose neighbouring frames correlate
    def neighbour_correlation(cfg):
        m = next(iter(data_lib.training_dataset(tracks, cfg)))[0].numpy()
        a, b = np.log1p(m[:, :-1]).ravel(), np.log1p(m[:, 1:]).ravel()
        return np.corrcoef(a, b)[0, 1]
    assert neighbour_correlation(config.replace(**{"model.generator": "rnn"})) > \
        neighbour_correlation(config) + 0.05


def test_run_folder_with_another_config_is_refused(tmp_path):
    from svsgan_tf.errors import ConfigError

    train(tiny_config(**{"train.gan_epochs": 0}), str(tmp_path), verbose=0, tensorboard=False)
    with pytest.raises(ConfigError, match="different config"):
        train(tiny_config(**{"train.seed": 5}), str(tmp_path), verbose=0, tensorboard=False)


def test_gradient_balance_puts_the_adversarial_gradient_on_the_kl_scale():
    config = tiny_config()
    model = build_svsgan(config)
    variables = model.generator.trainable_variables
    index = next(i for i, v in enumerate(variables) if v is model.generator.mask_layer.kernel)
    kl_grads = [tf.zeros_like(v) for v in variables]
    adversarial_grads = [tf.zeros_like(v) for v in variables]
    kl_grads[index] = tf.fill(variables[index].shape, 3.0)
    adversarial_grads[index] = tf.fill(variables[index].shape, 1.5)
    assert float(model._adversarial_scale(kl_grads, adversarial_grads, variables)) == pytest.approx(2.0)
    unbalanced = build_svsgan(config.replace(**{"train.balance": "none"}))
    assert float(unbalanced._adversarial_scale(kl_grads, adversarial_grads, variables)) == 1.0

    mixture, vocals = tiny_batches(config, 1)[0]
    model.set_phase("gan")
    logs = model.train_step((mixture, vocals))
    assert float(logs["adv_scale"]) > 0
    # the G loss is KL + adversarial_weight * scale * adversarial
    expected = float(logs["kl"]) + config.train.adversarial_weight * float(logs["adv_scale"]) * float(logs["g_adversarial"])
    assert float(logs["g_loss"]) == pytest.approx(expected, rel=1e-4)


def test_best_model_survives_a_resumed_run(tmp_path):
    config = tiny_config(**{"train.gan_epochs": 0, "train.pretrain_epochs": 2})
    train(config, str(tmp_path), verbose=0, tensorboard=False)
    record = json.loads((tmp_path / "best_model" / "best.json").read_text())   # inside, written with the weights
    assert record["epoch"] in (1, 2) and np.isfinite(record["val_sdr"])
    history = (tmp_path / "history.csv").read_text().splitlines()
    assert "val_sdr" in history[0].split(",") and len(history) == 3
    # a longer run resumed in the same folder keeps comparing with the recorded best
    from svsgan_tf.training.callbacks import SaveModelDir

    callback = SaveModelDir(str(tmp_path / "model"), config, str(tmp_path / "best_model"))
    callback.on_train_begin()
    assert callback.best == -record["val_sdr"]          # stored signed: lower is better inside
    # a run folder from before best.json kept the record beside the folder: it is still read
    (tmp_path / "best_model" / "best.json").unlink()
    (tmp_path / "best_model.json").write_text(json.dumps({"val_sdr": 1.5, "epoch": 1}))
    callback.on_train_begin()
    assert callback.best == -1.5


def test_validation_sdr_is_the_median_global_sdr_of_the_separated_songs(tmp_path):
    """The callback's val_sdr equals separating each song with the Separator and scoring it in NumPy."""
    from svsgan_tf.training.callbacks import ValidationSDR
    from svsgan_tf.separation.separator import Separator

    config = tiny_config()
    tracks = make_tracks(3, seed=5, duration=1.0, sample_rate=config.stft.sample_rate)
    model = build_svsgan(config)
    callback = ValidationSDR(tracks, config)
    callback.set_model(model)
    callback.on_train_begin()
    logs = {}
    callback.on_epoch_end(0, logs)
    separator = Separator(config, model.generator)
    expected = []
    for track in tracks:
        vocals = separator.separate(track.mixture)["vocals"]
        error = np.sum((track.vocals - vocals) ** 2)
        expected.append(10 * np.log10(np.sum(track.vocals ** 2) / error))
    np.testing.assert_allclose(logs["val_sdr"], np.median(expected), atol=1e-3)


def test_init_model_may_change_dropout_only(tmp_path):
    config = tiny_config(**{"train.pretrain_epochs": 1, "train.gan_epochs": 0})
    start = train(config, str(tmp_path / "start"), verbose=0, tensorboard=False).model_dir
    dropout = config.replace(**{"model.dropout": 0.3})
    model = build_svsgan(dropout, init_model=start)
    assert model.generator.dropout_rate == 0.3
    from svsgan_tf.models.model_io import load_generator

    for got, saved in zip(model.generator.get_weights(), load_generator(start)[1].get_weights()):
        np.testing.assert_array_equal(got, saved)
    with pytest.raises(ConfigError, match="differs"):
        build_svsgan(config.replace(**{"model.encoder_units": [8, 4]}), init_model=start)


@pytest.mark.parametrize("interleave", [False, True])
def test_interleaved_excerpts_cycle_through_the_tracks(interleave):
    from svsgan_tf.data.datasets import ArrayTrack

    nb_tracks, per_track, nb_samples = 5, 3, 64
    # track k's vocals are the constant k + 1, so every excerpt says which track it came from
    tracks = [ArrayTrack(f"t{k}", np.full((400, 1), k + 1.0, np.float32), np.zeros((400, 1), np.float32), 8000)
              for k in range(nb_tracks)]
    dataset = data_lib.waveform_excerpts(tracks, nb_samples, per_track, seed=0, random=True,
                                         interleave=interleave)
    order = [int(round(float(v[0, 0]))) - 1 for _, v in dataset]
    assert sorted(order) == sorted(list(range(nb_tracks)) * per_track)        # every track, as often
    rounds = [order[i:i + nb_tracks] for i in range(0, len(order), nb_tracks)]
    if interleave:       # each round holds every track once, in a new order
        assert all(sorted(r) == list(range(nb_tracks)) for r in rounds)
        assert len({tuple(r) for r in rounds}) > 1
    else:                # a track's excerpts come one after another
        assert all(order[i] == order[i - i % per_track] for i in range(len(order)))
