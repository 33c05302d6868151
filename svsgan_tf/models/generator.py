"""Mask generators: a per-frame fully connected encoder-decoder and an encoder-LSTM-decoder."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


# smallest standard deviation (log1p units) a bin is standardised by: a near-constant bin (empty above
# a codec's cut-off, say) would otherwise be scaled up by 1e4 and drown the others in noise
MIN_INPUT_STD = 0.05


class MaskGenerator(keras.Model):
    """Base generator: mixture magnitude (batch, nb_frames, nb_bins) -> soft mask in [0, 1], same shape.

    The encoder sees the first `nb_input_bins` bins only (the band below model.max_frequency),
    compressed with log1p and standardised per bin with `input_mean` / `input_scale` (initialised from
    training data by `set_input_statistics`, then trained, as in Open-Unmix); the mask covers all
    `nb_bins`. The vocals estimate is mask * mixture magnitude; the accompaniment is (1 - mask) * mixture.
    """

    def __init__(self, nb_bins: int, encoder_units=(512, 256), decoder_units=(512,),
                 nb_input_bins: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.nb_bins = nb_bins
        self.nb_input_bins = nb_input_bins or nb_bins
        self.encoder_units = tuple(encoder_units)
        self.decoder_units = tuple(decoder_units)
        self.input_mean = self.add_weight(shape=(self.nb_input_bins,), initializer="zeros", name="input_mean")
        self.input_scale = self.add_weight(shape=(self.nb_input_bins,), initializer="ones", name="input_scale")
        self.encoder = [keras.layers.Dense(u, activation="relu", name=f"encoder_{i}")
                        for i, u in enumerate(self.encoder_units)]
        self.decoder = [keras.layers.Dense(u, activation="relu", name=f"decoder_{i}")
                        for i, u in enumerate(self.decoder_units)]
        self.mask_layer = keras.layers.Dense(nb_bins, activation="sigmoid", name="mask")

    def set_input_statistics(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Set the per-bin standardisation from log1p-magnitude statistics of shape (nb_bins,); the
        standard deviation is floored at MIN_INPUT_STD."""
        mean = np.asarray(mean, np.float32)[:self.nb_input_bins]
        std = np.asarray(std, np.float32)[:self.nb_input_bins]
        self.input_mean.assign(mean)
        self.input_scale.assign(1.0 / np.maximum(std, MIN_INPUT_STD))

    def features(self, mixture_magnitude):
        """(batch, nb_frames, nb_bins) magnitude -> (batch, nb_frames, nb_input_bins) standardised log1p."""
        band = mixture_magnitude[..., :self.nb_input_bins]
        return (tf.math.log1p(band) - self.input_mean) * self.input_scale

    def encode(self, mixture_magnitude):
        x = self.features(mixture_magnitude)
        for layer in self.encoder:
            x = layer(x)
        return x

    def decode(self, hidden):
        x = hidden
        for layer in self.decoder:
            x = layer(x)
        return self.mask_layer(x)

    def create_weights(self) -> None:
        """Create every weight by calling the model on one zero frame."""
        self(tf.zeros((1, 1, self.nb_bins)))

    def get_config(self):
        return {"nb_bins": self.nb_bins, "encoder_units": self.encoder_units,
                "decoder_units": self.decoder_units, "nb_input_bins": self.nb_input_bins}


class EncoderGenerator(MaskGenerator):
    """Fully connected encoder-decoder applied to each frame on its own (paper, Fig. 1)."""

    def call(self, mixture_magnitude, training=False):
        """(batch, nb_frames, nb_bins) -> mask (batch, nb_frames, nb_bins)."""
        return self.decode(self.encode(mixture_magnitude))


class RNNGenerator(MaskGenerator):
    """Encoder, LSTM over frames, decoder (paper, Fig. 4).

    A unidirectional LSTM can run block by block: `call(..., initial_state=[h, c], return_state=True)`
    returns the state to feed to the next block (used by streaming/TFLite inference).
    """

    def __init__(self, nb_bins: int, encoder_units=(512, 256), decoder_units=(512,), lstm_units=256,
                 bidirectional=False, nb_input_bins: int | None = None, **kwargs):
        super().__init__(nb_bins, encoder_units, decoder_units, nb_input_bins, **kwargs)
        self.lstm_units = lstm_units
        self.bidirectional = bidirectional
        lstm = keras.layers.LSTM(lstm_units, return_sequences=True, return_state=not bidirectional,
                                 name="lstm")
        self.lstm = keras.layers.Bidirectional(lstm, name="bilstm") if bidirectional else lstm

    def call(self, mixture_magnitude, training=False, initial_state=None, return_state=False):
        """(batch, nb_frames, nb_bins) -> mask (batch, nb_frames, nb_bins) [, [h, c]]."""
        hidden = self.encode(mixture_magnitude)            # (batch, nb_frames, encoder_units[-1])
        if self.bidirectional:
            if initial_state is not None or return_state:
                raise ValueError("a bidirectional LSTM cannot carry state between blocks")
            return self.decode(self.lstm(hidden, training=training))
        sequence, state_h, state_c = self.lstm(hidden, initial_state=initial_state, training=training)
        mask = self.decode(sequence)                          # (batch, nb_frames, nb_bins)
        return (mask, [state_h, state_c]) if return_state else mask

    def get_config(self):
        return {**super().get_config(), "lstm_units": self.lstm_units,
                "bidirectional": self.bidirectional}
