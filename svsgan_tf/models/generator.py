"""Mask generators: a per-frame fully connected encoder-decoder and an encoder-LSTM-decoder."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


# smallest standard deviation (log1p units) a bin is standardised by: a near-constant bin (empty above
# a codec's cut-off, say) would otherwise be scaled up by 1e4 and drown the others in noise
MIN_INPUT_STD = 0.05


class MaskGenerator(keras.Model):
    """Base generator: mixture magnitude (batch, nb_frames, nb_channels * nb_bins) -> soft mask in
    [0, 1], same shape.

    A frame holds `nb_channels` channels' `nb_bins` bins, channel-major (1: one channel, the paper's
    model; 2: joint stereo, see ModelConfig). The encoder sees the first `nb_input_bins` bins of each
    channel only (the band below model.max_frequency), compressed with log1p and standardised per bin
    with `input_mean` / `input_scale` (initialised from training data by `set_input_statistics`, then
    trained, as in Open-Unmix); the mask covers all bins. The vocals estimate is mask * mixture
    magnitude; the accompaniment is (1 - mask) * mixture. With `dropout` > 0, that fraction of every
    hidden layer's outputs (encoder, LSTM, decoder) is dropped in training.

    With `context_frames` = k > 0, the second encoder layer is a convolution over time: it sees the
    first layer's outputs of the frame itself and of the k frames before and after it (zero-padded at
    the ends of the input), as in the DNN separators with context windows (Uhlich et al., 2015). The
    first layer stays per frame, so the context costs (2k + 1) x encoder_units[0] x encoder_units[1]
    weights rather than (2k + 1) x the input size.
    """

    def __init__(self, nb_bins: int, encoder_units=(512, 256), decoder_units=(512,),
                 nb_input_bins: int | None = None, nb_channels: int = 1, dropout: float = 0.0,
                 context_frames: int = 0, **kwargs):
        super().__init__(**kwargs)
        if context_frames and len(encoder_units) < 2:
            raise ValueError("context_frames > 0 needs at least two encoder layers")
        self.context_frames = int(context_frames)
        self.nb_bins = nb_bins
        self.nb_input_bins = nb_input_bins or nb_bins
        self.nb_channels = nb_channels
        self.dropout_rate = float(dropout)
        self.dropout = keras.layers.Dropout(self.dropout_rate, name="dropout")
        self.encoder_units = tuple(encoder_units)
        self.decoder_units = tuple(decoder_units)
        nb_inputs = nb_channels * self.nb_input_bins
        self.input_mean = self.add_weight(shape=(nb_inputs,), initializer="zeros", name="input_mean")
        self.input_scale = self.add_weight(shape=(nb_inputs,), initializer="ones", name="input_scale")
        self.encoder = [
            keras.layers.Conv1D(u, 2 * self.context_frames + 1, padding="same", activation="relu",
                                name=f"encoder_{i}")
            if i == 1 and self.context_frames else keras.layers.Dense(u, activation="relu", name=f"encoder_{i}")
            for i, u in enumerate(self.encoder_units)]
        self.decoder = [keras.layers.Dense(u, activation="relu", name=f"decoder_{i}")
                        for i, u in enumerate(self.decoder_units)]
        self.mask_layer = keras.layers.Dense(nb_channels * nb_bins, activation="sigmoid", name="mask")

    @property
    def nb_features(self) -> int:
        """Values per input frame: nb_channels * nb_bins."""
        return self.nb_channels * self.nb_bins

    def set_input_statistics(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Set the per-bin standardisation from log1p-magnitude statistics of shape (nb_features,); the
        standard deviation is floored at MIN_INPUT_STD."""
        def band(values):
            # (nb_features,) -> (nb_channels, nb_bins) -> (nb_channels * nb_input_bins,)
            values = np.asarray(values, np.float32).reshape(self.nb_channels, self.nb_bins)
            return values[:, :self.nb_input_bins].reshape(-1)
        self.input_mean.assign(band(mean))
        self.input_scale.assign(1.0 / np.maximum(band(std), MIN_INPUT_STD))

    def features(self, mixture_magnitude):
        """(batch, nb_frames, nb_channels * nb_bins) magnitude -> standardised log1p of the band,
        (batch, nb_frames, nb_channels * nb_input_bins)."""
        if self.nb_input_bins < self.nb_bins:
            leading = tf.shape(mixture_magnitude)[:-1]                        # [batch, nb_frames]
            # (batch, nb_frames, nb_channels * nb_bins) -> (batch, nb_frames, nb_channels, nb_bins)
            channels = tf.reshape(mixture_magnitude, tf.concat([leading, [self.nb_channels, self.nb_bins]], 0))
            # (batch, nb_frames, nb_channels, nb_input_bins) -> (batch, nb_frames, nb_channels * nb_input_bins)
            band = tf.reshape(channels[..., :self.nb_input_bins],
                              tf.concat([leading, [self.nb_channels * self.nb_input_bins]], 0))
        else:
            band = mixture_magnitude
        return (tf.math.log1p(band) - self.input_mean) * self.input_scale

    def encode(self, mixture_magnitude, training=False):
        """(batch, nb_frames, nb_features) -> (batch, nb_frames, encoder_units[-1]); with context_frames,
        each output frame depends on the 2 * context_frames + 1 input frames around it."""
        x = self.features(mixture_magnitude)
        for layer in self.encoder:
            x = self.dropout(layer(x), training=training)
        return x

    def decode(self, hidden, training=False):
        """(batch, nb_frames, hidden units) -> mask (batch, nb_frames, nb_features)."""
        x = hidden
        for layer in self.decoder:
            x = self.dropout(layer(x), training=training)
        return self.mask_layer(x)

    def create_weights(self) -> None:
        """Create every weight by calling the model on one zero frame."""
        self(tf.zeros((1, 1, self.nb_features)))

    def get_config(self):
        return {"nb_bins": self.nb_bins, "encoder_units": self.encoder_units,
                "decoder_units": self.decoder_units, "nb_input_bins": self.nb_input_bins,
                "nb_channels": self.nb_channels, "dropout": self.dropout_rate,
                "context_frames": self.context_frames}


class EncoderGenerator(MaskGenerator):
    """Fully connected encoder-decoder applied to each frame on its own (paper, Fig. 1)."""

    def call(self, mixture_magnitude, training=False):
        """(batch, nb_frames, nb_features) -> mask (batch, nb_frames, nb_features)."""
        return self.decode(self.encode(mixture_magnitude, training), training)


class RNNGenerator(MaskGenerator):
    """Encoder, LSTM over frames, decoder (paper, Fig. 4).

    A unidirectional LSTM can run block by block: `call(..., initial_state=[h, c], return_state=True)`
    returns the state to feed to the next block (used by streaming/TFLite inference); not with
    context_frames, whose window reaches across a block's edges.
    """

    def __init__(self, nb_bins: int, encoder_units=(512, 256), decoder_units=(512,), lstm_units=256,
                 bidirectional=False, nb_input_bins: int | None = None, nb_channels: int = 1,
                 dropout: float = 0.0, context_frames: int = 0, **kwargs):
        super().__init__(nb_bins, encoder_units, decoder_units, nb_input_bins, nb_channels, dropout,
                         context_frames, **kwargs)
        self.lstm_units = lstm_units
        self.bidirectional = bidirectional
        lstm = keras.layers.LSTM(lstm_units, return_sequences=True, return_state=not bidirectional,
                                 name="lstm")
        self.lstm = keras.layers.Bidirectional(lstm, name="bilstm") if bidirectional else lstm

    def call(self, mixture_magnitude, training=False, initial_state=None, return_state=False):
        """(batch, nb_frames, nb_features) -> mask (batch, nb_frames, nb_features) [, [h, c]]."""
        if self.context_frames and (initial_state is not None or return_state):
            raise ValueError("an encoder with context_frames sees frames beyond a block's edges; "
                             "it cannot run block by block")
        hidden = self.encode(mixture_magnitude, training)  # (batch, nb_frames, encoder_units[-1])
        if self.bidirectional:
            if initial_state is not None or return_state:
                raise ValueError("a bidirectional LSTM cannot carry state between blocks")
            sequence = self.lstm(hidden, training=training)   # (batch, nb_frames, 2 * lstm_units)
            return self.decode(self.dropout(sequence, training=training), training)
        sequence, state_h, state_c = self.lstm(hidden, initial_state=initial_state, training=training)
        mask = self.decode(self.dropout(sequence, training=training), training)   # (batch, nb_frames, nb_features)
        return (mask, [state_h, state_c]) if return_state else mask

    def get_config(self):
        return {**super().get_config(), "lstm_units": self.lstm_units,
                "bidirectional": self.bidirectional}
