"""Conditional discriminator: an MLP over a candidate vocals frame joined with its mixture frame."""
from __future__ import annotations

import keras
import tensorflow as tf


class Discriminator(keras.Model):
    """D(s, z): (vocals magnitude, mixture magnitude), each (batch, nb_frames, nb_features) -> logits
    (batch, nb_frames), one real/fake decision per frame (paper, Fig. 5: 3 hidden layers of 512).

    nb_features is the generator's frame size (nb_channels * nb_bins). Both spectra are compressed
    with log1p before they are joined to (batch, nb_frames, 2 * nb_features).
    """

    def __init__(self, nb_features: int, units=(512, 512, 512), **kwargs):
        super().__init__(**kwargs)
        self.nb_features = nb_features
        self.units = tuple(units)
        self.hidden = [keras.layers.Dense(u, name=f"hidden_{i}") for i, u in enumerate(self.units)]
        self.activation = keras.layers.LeakyReLU(negative_slope=0.2)
        self.logit = keras.layers.Dense(1, name="logit")

    def call(self, inputs, training=False):
        vocals_magnitude, mixture_magnitude = inputs
        x = tf.concat([tf.math.log1p(vocals_magnitude), tf.math.log1p(mixture_magnitude)], axis=-1)
        for layer in self.hidden:
            x = self.activation(layer(x))
        return tf.squeeze(self.logit(x), axis=-1)          # (batch, nb_frames)

    def create_weights(self) -> None:
        """Create every weight by calling the model on one zero frame."""
        frame = tf.zeros((1, 1, self.nb_features))
        self((frame, frame))

    def get_config(self):
        return {"nb_features": self.nb_features, "units": self.units}
