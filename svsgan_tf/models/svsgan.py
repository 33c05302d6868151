"""The SVSGAN Keras model: a custom train_step for supervised pretraining (phase 1) and the cGAN (phase 2)."""
from __future__ import annotations

import logging

import keras
import tensorflow as tf

from svsgan_tf.config import PHASES, TrainConfig
from svsgan_tf.training.distribute import is_multi_worker
from svsgan_tf.models.losses import discriminator_loss, generalized_kl, generator_adversarial_loss, supervised_loss
from svsgan_tf.models.discriminator import Discriminator
from svsgan_tf.models.generator import MaskGenerator

logger = logging.getLogger(__name__)


class SVSGAN(keras.Model):
    """Generator G and conditional discriminator D trained in two phases.

    Data: batches of (mixture magnitude, vocals magnitude), each (batch, nb_frames, nb_bins).
    Phase `pretrain` updates G alone with the supervised loss (train.loss: the generalized KL
    divergence or a squared error); phase `gan` alternates a D update on real (vocals, mixture)
    against fake (G(mixture), mixture) and a G update on adversarial_weight * scale * -log D(G(z), z)
    + kl_weight * supervised loss, where `scale` (train.balance) puts the adversarial gradient on the
    supervised gradient's scale. Switch with `set_phase`. The KL (against this run's target, see
    data.target) is logged as `kl` whatever G trains on, so runs compare; a run on another loss logs
    that loss under its name (`mse`) too.

    Under a tf.distribute strategy each replica gets its part of the global batch. Every loss is a
    per-example (batch,) value averaged over the global batch with `tf.nn.compute_average_loss`, since
    gradients are summed across replicas; the trackers take the unscaled per-example values, so the
    logs are true means. Training needs equal per-replica batches (`check_global_batch`).
    """

    def __init__(self, generator: MaskGenerator, discriminator: Discriminator, train_config: TrainConfig,
                 **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.train_config = train_config
        self.phase = PHASES[0]
        self.kl_tracker = keras.metrics.Mean(name="kl")
        # the tracker of the loss G trains on, when it is not the KL
        self.loss_tracker = None if train_config.loss == "kl" else keras.metrics.Mean(name=train_config.loss)
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.adversarial_tracker = keras.metrics.Mean(name="g_adversarial")
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.d_real_tracker = keras.metrics.Mean(name="d_real")
        self.d_fake_tracker = keras.metrics.Mean(name="d_fake")
        self.adversarial_scale_tracker = keras.metrics.Mean(name="adv_scale")

    def compile(self, g_optimizer, d_optimizer, **kwargs):
        """Attach one optimizer per network (keras-io GAN convention) and build both.

        Call inside the strategy scope: the optimizers' slots must be created there. `self.optimizer` is
        G's optimizer (G takes one step per training step in both phases), so callbacks that count
        steps with `model.optimizer.iterations` (TensorBoard) count training steps; without it Keras
        would attach an unused default RMSprop.
        """
        super().compile(optimizer=g_optimizer, **kwargs)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Skip Keras' build-from-a-peeked-batch at the start of fit (Keras 3.15, TF backend).

        SVSGAN and both optimizers are built before fit. The peek would read a batch from the data
        pipeline (shifting the generator's random draws, so strategy and single-device runs would see
        different data) and, under MultiWorkerMirroredStrategy, reduces that batch with
        `strategy.reduce` in eager mode, which fails ("Attempt to convert a value (PerReplica...)").
        """

    @property
    def supervised_trackers(self):
        """The KL's tracker, and that of the loss G trains on when it is another."""
        return [self.kl_tracker] + ([self.loss_tracker] if self.loss_tracker is not None else [])

    @property
    def metrics(self):
        return self.supervised_trackers + [self.g_loss_tracker, self.adversarial_tracker, self.d_loss_tracker,
                                           self.d_real_tracker, self.d_fake_tracker, self.adversarial_scale_tracker]

    def set_phase(self, phase: str) -> None:
        """Switch to `pretrain` or `gan`; the next step retraces the train function."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}, expected one of {PHASES}")
        if phase != self.phase:
            logger.info("training phase: %s", phase)
        self.phase = phase
        self.train_function = None
        self.make_train_function(force=True)

    def call(self, mixture_magnitude, training=False):
        """(batch, nb_frames, nb_bins) mixture magnitude -> estimated vocals magnitude, same shape."""
        return self.generator(mixture_magnitude, training=training) * mixture_magnitude

    def train_step(self, data):
        mixture, vocals = data                                 # (batch, nb_frames, nb_bins) each
        if self.phase == "pretrain":
            return self._pretrain_step(mixture, vocals)
        return self._gan_step(mixture, vocals)

    def _supervised(self, vocals, estimate):
        """(KL, the loss G trains on), each per example (batch,); the same tensor for train.loss=kl."""
        cfg = self.train_config
        kl = generalized_kl(vocals, estimate, cfg.eps)
        return kl, (kl if cfg.loss == "kl" else supervised_loss(cfg.loss, vocals, estimate, cfg.eps))

    def _track_supervised(self, kl, supervised) -> None:
        self.kl_tracker.update_state(kl)
        if self.loss_tracker is not None:
            self.loss_tracker.update_state(supervised)

    def _pretrain_step(self, mixture, vocals):
        # 1. estimate the vocals and measure the per-example supervised loss to the truth
        with tf.GradientTape() as tape:
            estimate = self(mixture, training=True)
            kl, supervised = self._supervised(vocals, estimate)          # (batch,) each
            loss = tf.nn.compute_average_loss(supervised)
        # 2. update G alone
        variables = self.generator.trainable_variables
        self.g_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        # 3. track the unscaled per-example values
        self._track_supervised(kl, supervised)
        return self._logs({m.name: m.result() for m in self.supervised_trackers})

    def _gan_step(self, mixture, vocals):
        cfg = self.train_config
        # 1. D step: real pairs (s, z) against fake pairs (G(z), z), G held fixed
        fake = tf.stop_gradient(self(mixture, training=True))
        with tf.GradientTape() as tape:
            real_logits = self.discriminator((vocals, mixture), training=True)    # (batch, nb_frames)
            fake_logits = self.discriminator((fake, mixture), training=True)
            d_loss = discriminator_loss(real_logits, fake_logits)                 # (batch,)
            d_scaled = tf.nn.compute_average_loss(d_loss)
        variables = self.discriminator.trainable_variables
        self.d_optimizer.apply_gradients(zip(tape.gradient(d_scaled, variables), variables))
        # 2. G step: fool the updated D while staying close to the truth (train.loss); the two
        #    gradients are taken apart so that the adversarial one can be put on the supervised one's scale
        with tf.GradientTape(persistent=True) as tape:
            estimate = self(mixture, training=True)
            adversarial = generator_adversarial_loss(
                self.discriminator((estimate, mixture), training=False))          # (batch,)
            kl, supervised = self._supervised(vocals, estimate)          # (batch,) each
            adversarial_scaled = tf.nn.compute_average_loss(adversarial)
            supervised_scaled = tf.nn.compute_average_loss(supervised)
        variables = self.generator.trainable_variables
        supervised_grads = tape.gradient(supervised_scaled, variables)
        adversarial_grads = tape.gradient(adversarial_scaled, variables)
        del tape
        scale = self._adversarial_scale(supervised_grads, adversarial_grads, variables)
        adversarial_weight = cfg.adversarial_weight * scale
        grads = [cfg.kl_weight * k + adversarial_weight * a for k, a in zip(supervised_grads, adversarial_grads)]
        self.g_optimizer.apply_gradients(zip(grads, variables))
        g_loss = adversarial_weight * adversarial + cfg.kl_weight * supervised        # (batch,)
        self.adversarial_scale_tracker.update_state(scale)
        # 3. track the unscaled per-example values and D's mean belief on real and fake frames
        self._track_supervised(kl, supervised)
        self.g_loss_tracker.update_state(g_loss)
        self.adversarial_tracker.update_state(adversarial)
        self.d_loss_tracker.update_state(d_loss)
        self.d_real_tracker.update_state(tf.reduce_mean(tf.sigmoid(real_logits), axis=-1))
        self.d_fake_tracker.update_state(tf.reduce_mean(tf.sigmoid(fake_logits), axis=-1))
        return self._logs({m.name: m.result() for m in self.metrics})

    def _adversarial_scale(self, supervised_grads, adversarial_grads, variables):
        """The factor that puts the adversarial gradient on the supervised gradient's scale.

        With train.balance == "gradient": ||dL/dW|| / ||dAdv/dW||, L the supervised loss, on the kernel W
        of G's last layer
        (the adaptive weight of Esser et al. 2021, "Taming Transformers", eq. 7), from gradients summed
        over replicas so that every replica uses the same factor; then adversarial_weight is the ratio
        of the two gradients' norms at G's output. With "none": 1.
        """
        if self.train_config.balance == "none":
            return tf.constant(1.0)
        index = next(i for i, v in enumerate(variables) if v is self.generator.mask_layer.kernel)
        supervised_last, adversarial_last = supervised_grads[index], adversarial_grads[index]
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            supervised_last, adversarial_last = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                                                   [supervised_last, adversarial_last])
        ratio = tf.norm(supervised_last) / (tf.norm(adversarial_last) + 1e-8)
        return tf.stop_gradient(tf.clip_by_value(ratio, 0.0, 1e4))

    def test_step(self, data):
        mixture, vocals = data                                 # (batch, nb_frames, nb_bins) each
        # 1. per-example supervised losses of the estimate, tracked unscaled
        self._track_supervised(*self._supervised(vocals, self(mixture, training=False)))
        # 2. the running means over all replicas' examples: the last validation batch can split unevenly
        #    (or leave a replica empty), where a mean of per-replica means would be biased
        context = tf.distribute.get_replica_context()
        logs = {}
        for tracker in self.supervised_trackers:
            total, count = tf.identity(tracker.total.value), tf.identity(tracker.count.value)
            if context is not None and context.num_replicas_in_sync > 1:
                total, count = context.all_reduce(tf.distribute.ReduceOp.SUM, [total, count])
            logs[tracker.name] = tf.math.divide_no_nan(total, count)
        return self._logs(logs)

    def _logs(self, values: dict) -> dict:
        """Step outputs {name: scalar} in the form Keras reduces across replicas.

        Keras 3.15 averages step outputs with `strategy.reduce("MEAN", value, axis=0)` under
        multi-worker training, which fails on scalars (keras-team/keras#20585), so there each value
        gets a leading axis of length 1; the reduced logs are scalars again.
        """
        if is_multi_worker(self.distribute_strategy):
            return {name: tf.reshape(value, (1,)) for name, value in values.items()}
        return values
