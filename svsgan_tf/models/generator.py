"""Mask generators: a per-frame fully connected encoder-decoder, an encoder-LSTM-decoder, a U-Net, and
the ensemble that averages trained ones."""
from __future__ import annotations

import math

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
    model; 2: joint stereo, see ModelConfig). The network sees the first `nb_input_bins` bins of each
    channel only (the band below model.max_frequency), compressed with log1p and standardised per bin
    with `input_mean` / `input_scale` (initialised from training data by `set_input_statistics`, then
    trained, as in Open-Unmix); the mask covers all bins. The vocals estimate is mask * mixture
    magnitude; the accompaniment is (1 - mask) * mixture. `dropout` is the rate of the subclass's
    dropout layers in training. Every subclass names its output layer `mask_layer` (train.balance
    compares gradients at its kernel).
    """

    def __init__(self, nb_bins: int, nb_input_bins: int | None = None, nb_channels: int = 1,
                 dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.nb_bins = nb_bins
        self.nb_input_bins = nb_input_bins or nb_bins
        self.nb_channels = nb_channels
        self.dropout_rate = float(dropout)
        self.dropout = keras.layers.Dropout(self.dropout_rate, name="dropout")
        nb_inputs = nb_channels * self.nb_input_bins
        self.input_mean = self.add_weight(shape=(nb_inputs,), initializer="zeros", name="input_mean")
        self.input_scale = self.add_weight(shape=(nb_inputs,), initializer="ones", name="input_scale")

    @property
    def nb_features(self) -> int:
        """Values per input frame: nb_channels * nb_bins."""
        return self.nb_channels * self.nb_bins

    @property
    def receptive_frames(self) -> int | None:
        """How many frames before and after a frame its mask depends on; None: unbounded (an LSTM)."""
        return 0

    @property
    def frame_multiple(self) -> int:
        """A block of frames starting on a multiple of this gives the masks of the whole input there."""
        return 1

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

    def create_weights(self) -> None:
        """Create every weight by calling the model on one zero frame."""
        self(tf.zeros((1, 1, self.nb_features)))

    def get_config(self):
        return {"nb_bins": self.nb_bins, "nb_input_bins": self.nb_input_bins,
                "nb_channels": self.nb_channels, "dropout": self.dropout_rate}


class DenseMaskGenerator(MaskGenerator):
    """Fully connected encoder and decoder layers shared by the paper's two generators; with `dropout`
    > 0, that fraction of every hidden layer's outputs (encoder, LSTM, decoder) is dropped in training.
    """

    def __init__(self, nb_bins: int, encoder_units=(512, 256), decoder_units=(512,),
                 nb_input_bins: int | None = None, nb_channels: int = 1, dropout: float = 0.0, **kwargs):
        super().__init__(nb_bins, nb_input_bins, nb_channels, dropout, **kwargs)
        self.encoder_units = tuple(encoder_units)
        self.decoder_units = tuple(decoder_units)
        self.encoder = [keras.layers.Dense(u, activation="relu", name=f"encoder_{i}")
                        for i, u in enumerate(self.encoder_units)]
        self.decoder = [keras.layers.Dense(u, activation="relu", name=f"decoder_{i}")
                        for i, u in enumerate(self.decoder_units)]
        self.mask_layer = keras.layers.Dense(nb_channels * nb_bins, activation="sigmoid", name="mask")

    def encode(self, mixture_magnitude, training=False):
        """(batch, nb_frames, nb_features) -> (batch, nb_frames, encoder_units[-1]), frame by frame."""
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

    def get_config(self):
        return {**super().get_config(), "encoder_units": self.encoder_units,
                "decoder_units": self.decoder_units}


class EncoderGenerator(DenseMaskGenerator):
    """Fully connected encoder-decoder applied to each frame on its own (paper, Fig. 1)."""

    def call(self, mixture_magnitude, training=False):
        """(batch, nb_frames, nb_features) -> mask (batch, nb_frames, nb_features)."""
        return self.decode(self.encode(mixture_magnitude, training), training)


class RNNGenerator(DenseMaskGenerator):
    """Encoder, LSTM over frames, decoder (paper, Fig. 4).

    A unidirectional LSTM can run block by block: `call(..., initial_state=[h, c], return_state=True)`
    returns the state to feed to the next block (used by streaming/TFLite inference).
    """

    def __init__(self, nb_bins: int, encoder_units=(512, 256), decoder_units=(512,), lstm_units=256,
                 bidirectional=False, nb_input_bins: int | None = None, nb_channels: int = 1,
                 dropout: float = 0.0, **kwargs):
        super().__init__(nb_bins, encoder_units, decoder_units, nb_input_bins, nb_channels, dropout, **kwargs)
        self.lstm_units = lstm_units
        self.bidirectional = bidirectional
        lstm = keras.layers.LSTM(lstm_units, return_sequences=True, return_state=not bidirectional,
                                 name="lstm")
        self.lstm = keras.layers.Bidirectional(lstm, name="bilstm") if bidirectional else lstm

    @property
    def receptive_frames(self) -> int | None:
        """None: the LSTM's state depends on every earlier frame (every frame, bidirectional)."""
        return None

    def call(self, mixture_magnitude, training=False, initial_state=None, return_state=False):
        """(batch, nb_frames, nb_features) -> mask (batch, nb_frames, nb_features) [, [h, c]]."""
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


class _Upsample(keras.layers.Conv2DTranspose):
    """A 'same' transposed convolution of stride 2 whose output is exactly twice its input's size.

    Keras' own (3.x, TensorFlow backend) infers a wrong static output shape when the batch size is
    known and the frame count is not, as in training batches of a tf.data pipeline, and the batch
    normalisation after it then fails in the backward pass; this one takes the size from tf.shape.
    """

    def __init__(self, filters: int, kernel_size: int, **kwargs):
        kwargs.setdefault("name", "upsample")         # the class's own default name is no valid scope
        super().__init__(filters, kernel_size, strides=2, padding="same", **kwargs)

    def call(self, inputs):
        shape = tf.shape(inputs)                               # [batch, height, width, channels]
        output_shape = tf.stack([shape[0], 2 * shape[1], 2 * shape[2], self.filters])
        outputs = tf.nn.conv2d_transpose(inputs, self.kernel, output_shape, strides=2, padding="SAME")
        return tf.nn.bias_add(outputs, self.bias)


class UNetGenerator(MaskGenerator):
    """Convolutional U-Net over the spectrogram as an image (nb_frames x bins x channels), the
    architecture of Spleeter (Jansson et al., 2017, "Singing voice separation with deep U-Net
    convolutional networks"), narrower: 5 x 5 convolutions of stride 2 with `filters[i]` filters, each
    followed by batch normalisation and a leaky ReLU (slope 0.2); transposed convolutions back up, each
    followed by batch normalisation and a ReLU and joined with the encoder's output of the same size; a
    4 x 4 convolution (dilation 2) with a sigmoid gives one mask per channel. `dropout` applies to the
    first three upsampling layers, as Spleeter's 0.5 does.

    Its weights are shared across time and frequency, so it has far fewer weights per input than the
    fully connected generators and sees about 2^len(filters) frames and bins around each point. The
    input is padded with silent frames to a multiple of 2^len(filters) frames and cropped back; the band
    it sees (`nb_input_bins`, set by the factory to a multiple of 2^len(filters) where the spectrum
    allows) is padded the same way. Bins above the band take the mask of the band's top bin.
    """

    def __init__(self, nb_bins: int, filters=(8, 16, 32, 64, 128, 256), nb_input_bins: int | None = None,
                 nb_channels: int = 1, dropout: float = 0.0, **kwargs):
        super().__init__(nb_bins, nb_input_bins, nb_channels, dropout, **kwargs)
        self.filters = tuple(filters)
        self.multiple = 2 ** len(self.filters)
        self.down = [keras.layers.Conv2D(f, 5, strides=2, padding="same", name=f"down_{i}")
                     for i, f in enumerate(self.filters)]
        self.down_norm = [keras.layers.BatchNormalization(name=f"down_norm_{i}")
                          for i in range(len(self.filters))]
        # up_i doubles the size back to that of down_{depth-2-i}'s output; the last one to the input's
        up_filters = self.filters[-2::-1] + (self.filters[0],)
        self.up = [_Upsample(f, 5, name=f"up_{i}") for i, f in enumerate(up_filters)]
        self.up_norm = [keras.layers.BatchNormalization(name=f"up_norm_{i}") for i in range(len(up_filters))]
        self.mask_layer = keras.layers.Conv2D(nb_channels, 4, dilation_rate=2, padding="same",
                                              activation="sigmoid", name="mask")

    @property
    def receptive_frames(self) -> int | None:
        """An upper bound of the frames on each side that reach a frame's mask: per level, the stride-2
        5 x 5 convolution reaches 3 of its input's steps and the transposed one 2 of its output's, plus
        the final dilated 4 x 4 convolution's 4 frames."""
        return 5 * (self.multiple - 1) + 4

    @property
    def frame_multiple(self) -> int:
        """2^depth: the stride-2 layers see the same frames only from a start on this grid."""
        return self.multiple

    def call(self, mixture_magnitude, training=False):
        """(batch, nb_frames, nb_features) -> mask (batch, nb_frames, nb_features).

        In the shape comments, T is nb_frames and F nb_input_bins, each padded up to a multiple of
        2^depth; C is nb_channels.
        """
        nb_frames = tf.shape(mixture_magnitude)[1]
        pad_frames = (-nb_frames) % self.multiple
        pad_bins = (-self.nb_input_bins) % self.multiple
        # silent frames up to a multiple of 2^depth: (batch, T, nb_features)
        padded = tf.pad(mixture_magnitude, [[0, 0], [0, pad_frames], [0, 0]])
        x = self.features(padded)                          # (batch, T, C * nb_input_bins)
        shape = tf.shape(x)
        # (batch, T, C * nb_input_bins) -> (batch, T, C, nb_input_bins)
        x = tf.reshape(x, [shape[0], shape[1], self.nb_channels, self.nb_input_bins])
        x = tf.transpose(x, [0, 1, 3, 2])                  # (batch, T, nb_input_bins, C)
        x = tf.pad(x, [[0, 0], [0, 0], [0, pad_bins], [0, 0]])   # (batch, T, F, C)
        skips = []
        for conv, norm in zip(self.down, self.down_norm):  # each halves frames and bins
            x = tf.nn.leaky_relu(norm(conv(x), training=training), alpha=0.2)
            skips.append(x)
        for i, (deconv, norm) in enumerate(zip(self.up, self.up_norm)):  # each doubles them
            x = tf.nn.relu(norm(deconv(x), training=training))
            if i < 3:
                x = self.dropout(x, training=training)
            if i + 2 <= len(skips):
                x = tf.concat([x, skips[-(i + 2)]], axis=-1)
        mask = self.mask_layer(x)                          # (batch, T, F, C)
        mask = mask[:, :nb_frames, :self.nb_input_bins]    # (batch, nb_frames, nb_input_bins, nb_channels)
        if self.nb_input_bins < self.nb_bins:
            top = tf.repeat(mask[:, :, -1:], self.nb_bins - self.nb_input_bins, axis=2)
            mask = tf.concat([mask, top], axis=2)          # (batch, nb_frames, nb_bins, nb_channels)
        mask = tf.transpose(mask, [0, 1, 3, 2])            # (batch, nb_frames, nb_channels, nb_bins)
        # (batch, nb_frames, nb_channels, nb_bins) -> (batch, nb_frames, nb_channels * nb_bins)
        return tf.reshape(mask, [shape[0], nb_frames, self.nb_features])

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


class EnsembleGenerator(keras.Model):
    """The mean of the masks of several trained generators, for separation only (built by
    model_io from an ensemble folder, which `python -m svsgan_tf.pack A B ... --out DIR` writes).

    (batch, nb_frames, nb_channels * nb_bins) -> mask in [0, 1], same shape. The members may differ in
    architecture but must share nb_bins and nb_channels; each keeps its own input standardisation.
    """

    def __init__(self, members, **kwargs):
        super().__init__(**kwargs)
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        layouts = {(m.nb_bins, m.nb_channels) for m in members}
        if len(layouts) != 1:
            raise ValueError(f"ensemble members differ in (nb_bins, nb_channels): {sorted(layouts)}")
        self.members = members
        self.nb_bins, self.nb_channels = members[0].nb_bins, members[0].nb_channels
        self.built = True                                  # the members' weights exist already

    @property
    def nb_features(self) -> int:
        """Values per input frame: nb_channels * nb_bins."""
        return self.nb_channels * self.nb_bins

    @property
    def receptive_frames(self) -> int | None:
        """The widest member's (None if any member's is unbounded)."""
        reaches = [m.receptive_frames for m in self.members]
        return None if None in reaches else max(reaches)

    @property
    def frame_multiple(self) -> int:
        """The least common multiple of the members'."""
        return math.lcm(*(m.frame_multiple for m in self.members))

    def call(self, mixture_magnitude, training=False):
        """(batch, nb_frames, nb_features) -> mean mask (batch, nb_frames, nb_features); members always
        run in inference mode."""
        return tf.add_n([m(mixture_magnitude, training=False) for m in self.members]) / len(self.members)
