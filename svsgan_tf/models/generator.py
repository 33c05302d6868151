"""Mask generators: a per-frame fully connected encoder-decoder, an encoder-LSTM-decoder, a U-Net, and
the ensemble that averages trained ones."""
from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from svsgan_tf.audio.framing import power_mask
from svsgan_tf.config import MASK_EXTENSIONS


# smallest standard deviation (log1p units) a bin is standardised by: a near-constant bin (empty above
# a codec's cut-off, say) would otherwise be scaled up by 1e4 and drown the others in noise
MIN_INPUT_STD = 0.05
# the ratio masks of a multi-stem U-Net, as Spleeter's: (estimate^2 + EPSILON / stems) / (sum + EPSILON)
RATIO_EPSILON = 1e-10
# with segments, the first starts one silent frame before frame 0: Spleeter pads a whole window of
# silence before the waveform, stft.py pads n_fft - hop_length samples, one hop less
SEGMENT_LEAD_FRAMES = 1


class MaskGenerator(keras.Model):
    """Base generator: mixture magnitude (batch, nb_frames, nb_channels * nb_bins) -> soft mask in
    [0, 1], same shape.

    A frame holds `nb_channels` channels' `nb_bins` bins, channel-major (1: one channel, the paper's
    model; 2: joint stereo, see ModelConfig). The network sees the first `nb_input_bins` bins of each
    channel only (the band below model.max_frequency), compressed with log1p and standardised per bin
    with `input_mean` / `input_scale` (initialised from training data by `set_input_statistics`, then
    trained, as in Open-Unmix), or as it is without `compress_input` (Spleeter's); the mask covers all
    bins. The vocals estimate is mask * mixture
    magnitude; the accompaniment is (1 - mask) * mixture. `dropout` is the rate of the subclass's
    dropout layers in training. Every subclass names its output layer `mask_layer` (train.balance
    compares gradients at its kernel).
    """

    def __init__(self, nb_bins: int, nb_input_bins: int | None = None, nb_channels: int = 1,
                 dropout: float = 0.0, compress_input: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.compress_input = bool(compress_input)
        self.nb_bins = nb_bins
        self.nb_input_bins = nb_input_bins or nb_bins
        self.nb_channels = nb_channels
        self.dropout_rate = float(dropout)
        self.dropout = keras.layers.Dropout(self.dropout_rate, name="dropout")
        nb_inputs = nb_channels * self.nb_input_bins
        # trained with the network when used (compress_input), else fixed and unused
        self.input_mean = self.add_weight(shape=(nb_inputs,), initializer="zeros", name="input_mean",
                                          trainable=self.compress_input)
        self.input_scale = self.add_weight(shape=(nb_inputs,), initializer="ones", name="input_scale",
                                           trainable=self.compress_input)

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

    def band(self, mixture_magnitude):
        """(batch, nb_frames, nb_channels * nb_bins) magnitude -> the band the network sees,
        (batch, nb_frames, nb_channels * nb_input_bins)."""
        if self.nb_input_bins == self.nb_bins:
            return mixture_magnitude
        leading = tf.shape(mixture_magnitude)[:-1]                            # [batch, nb_frames]
        # (batch, nb_frames, nb_channels * nb_bins) -> (batch, nb_frames, nb_channels, nb_bins)
        channels = tf.reshape(mixture_magnitude, tf.concat([leading, [self.nb_channels, self.nb_bins]], 0))
        # (batch, nb_frames, nb_channels, nb_input_bins) -> (batch, nb_frames, nb_channels * nb_input_bins)
        return tf.reshape(channels[..., :self.nb_input_bins],
                          tf.concat([leading, [self.nb_channels * self.nb_input_bins]], 0))

    def compress(self, band):
        """The band's standardised log1p (with compress_input; else the magnitude as it is, as
        Spleeter's U-Net sees it), same shape."""
        if not self.compress_input:
            return band
        return (tf.math.log1p(band) - self.input_mean) * self.input_scale

    def features(self, mixture_magnitude):
        """(batch, nb_frames, nb_channels * nb_bins) magnitude -> what the network sees,
        (batch, nb_frames, nb_channels * nb_input_bins)."""
        return self.compress(self.band(mixture_magnitude))

    def create_weights(self) -> None:
        """Create every weight by calling the model on one zero frame."""
        self(tf.zeros((1, 1, self.nb_features)))

    def get_config(self):
        return {"nb_bins": self.nb_bins, "nb_input_bins": self.nb_input_bins,
                "nb_channels": self.nb_channels, "dropout": self.dropout_rate,
                "compress_input": self.compress_input}


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


# oneDNN vectorises a batch normalisation over channels: in bfloat16 an image of at most half this
# many channels is viewed as up to this many (`fused_affine`)
FUSED_CHANNELS = 16
# the unit scale of `rectified_bias`: a variance of 1 - 2^-10 plus this epsilon is 1 exactly in float32
UNIT_EPSILON = 2.0 ** -10


def fused_affine(x, scale, offset, mean, variance, epsilon: float, relu: bool = False):
    """(x - mean) * scale / sqrt(variance + epsilon) + offset per channel of (batch, height, width,
    channels) `x`, then a ReLU if `relu`: one inference FusedBatchNormV3 op in `x`'s dtype (the
    parameters, of shape (channels,), in float32), which oneDNN fuses with the ReLU.

    In bfloat16, an image of static width and at most FUSED_CHANNELS / 2 channels is viewed as k
    neighbouring columns per column, k * channels channels (k the largest power of two with k *
    channels <= FUSED_CHANNELS that divides the width; the parameters repeated k times), since oneDNN
    vectorises over channels: a 30 s song's one-channel finest level costs 1.9 ms instead of 10.5.
    Float32 graphs (exports, TFLite) keep the plain layout.
    """
    channels, width = x.shape[-1], x.shape[2]
    group = 1
    while (x.dtype == tf.bfloat16 and channels is not None and width is not None
           and 2 * group * channels <= FUSED_CHANNELS and width % (2 * group) == 0):
        group *= 2
    scale, offset, mean, variance = (tf.tile(tf.cast(p, tf.float32), [group]) for p in (scale, offset, mean, variance))
    shape = tf.shape(x)
    # (batch, height, width, channels) -> (batch, height, width / group, group * channels)
    view = tf.reshape(x, [shape[0], shape[1], width // group, group * channels]) if group > 1 else x
    y, *_ = tf.raw_ops.FusedBatchNormV3(x=view, scale=scale, offset=offset, mean=mean, variance=variance,
                                        epsilon=epsilon, is_training=False)
    if relu:
        y = tf.nn.relu(y)
    return tf.reshape(y, shape) if group > 1 else y


def normalise(norm: keras.layers.BatchNormalization, x, training):
    """Batch normalisation of (batch, height, width, channels) `x` by `norm`: the Keras layer in
    training; else `fused_affine` over its moving statistics, in `x`'s dtype. The Keras layer computes a
    bfloat16 input in float32 and casts back, three times the fused op's cost on CPU."""
    if training:
        return norm(x, training=True)
    if not norm.built:
        norm.build(x.shape)
    return fused_affine(x, norm.gamma, norm.beta, norm.moving_mean, norm.moving_variance, norm.epsilon)


def rectified_bias(x, bias):
    """relu(x + bias) of (batch, height, width, channels) `x`. In bfloat16 one op (`fused_affine` of unit
    scale and offset `bias`): a bias add and a ReLU are two passes over `x` (9.4 ms against 2.5 ms at a
    30 s song's finest 16-channel U-Net level). Float32 graphs (exports, TFLite) keep the plain ops."""
    if x.dtype != tf.bfloat16:
        return tf.nn.relu(tf.nn.bias_add(x, bias))
    unit = tf.ones_like(bias, dtype=tf.float32)
    return fused_affine(x, unit, bias, 0.0 * unit, (1.0 - UNIT_EPSILON) * unit, UNIT_EPSILON, relu=True)


class _FrozenWeights:
    """For the U-Net's convolutions: `freeze(dtype)` keeps the kernel and bias as constants of `dtype`
    for separation, so that a bfloat16 graph does not cast the float32 variables on every call (10 ms
    of a 30 s song for `fast`); `freeze(None)` drops them. Training reads the variables. Loading
    weights freezes them again; after `assign` or `set_weights`, call `freeze` again."""

    frozen = None

    def freeze(self, dtype) -> None:
        self.frozen = None if dtype is None else tuple(tf.constant(tf.cast(w, dtype)) for w in (self.kernel, self.bias))

    def load_own_variables(self, store):
        super().load_own_variables(store)
        if self.frozen is not None:
            self.freeze(self.frozen[0].dtype)

    def kernel_and_bias(self, training):
        """The weights a call uses: the frozen constants in inference where there are some."""
        return (self.kernel, self.bias) if training or self.frozen is None else self.frozen


class Conv2D(_FrozenWeights, keras.layers.Conv2D):
    """The U-Net's 'same' convolution of stride 2: Keras' Conv2D, with frozen weights in inference.

    It keeps Keras' class name because weight files name the layers of a list by their class
    (layers/u_net_tower/down/conv2d_<i>): files written before it existed load unchanged.
    """

    def __init__(self, filters: int, kernel_size: int, **kwargs):
        super().__init__(filters, kernel_size, strides=2, padding="same", **kwargs)

    def call(self, inputs, training=False):
        if training or self.frozen is None:
            return super().call(inputs)
        kernel, bias = self.frozen
        return tf.nn.bias_add(tf.nn.conv2d(inputs, kernel, strides=2, padding="SAME"), bias)


class _Upsample(_FrozenWeights, keras.layers.Conv2DTranspose):
    """A 'same' transposed convolution of stride 2 and a ReLU, whose output is exactly twice its input's
    size.

    Keras' own (3.x, TensorFlow backend) infers a wrong static output shape when the batch size is
    known and the frame count is not, as in training batches of a tf.data pipeline, and the batch
    normalisation after it then fails in the backward pass; this one takes the size from tf.shape.
    In bfloat16 inference the bias and the ReLU are one op (`rectified_bias`).
    """

    def __init__(self, filters: int, kernel_size: int, **kwargs):
        kwargs.setdefault("name", "upsample")         # the class's own default name is no valid scope
        super().__init__(filters, kernel_size, strides=2, padding="same", **kwargs)

    def call(self, inputs, training=False):
        kernel, bias = self.kernel_and_bias(training)
        shape = tf.shape(inputs)                               # [batch, height, width, channels]
        output_shape = tf.stack([shape[0], 2 * shape[1], 2 * shape[2], self.filters])
        outputs = tf.nn.conv2d_transpose(inputs, kernel, output_shape, strides=2, padding="SAME")
        outputs.set_shape([inputs.shape[0]] + [None if d is None else 2 * d for d in inputs.shape[1:3]]
                          + [self.filters])
        if training:
            return tf.nn.relu(tf.nn.bias_add(outputs, bias))
        return rectified_bias(outputs, bias)


class _DilatedConv(keras.layers.Conv2D):
    """A 'same' convolution of stride 1 with a dilation; in inference computed by tf.nn.conv2d.

    Keras' own (3.x, TensorFlow backend) goes through tf.nn.convolution, which on CPU computes a
    dilation by space-to-batch: 12.5 ms against 4.4 ms for the mask layer of a 30 s song. Training
    keeps Keras' form: TensorFlow's CPU kernels have no gradient of a dilated Conv2D without oneDNN.
    """

    def call(self, inputs, training=False):
        if training:
            return super().call(inputs)
        outputs = tf.nn.conv2d(inputs, self.kernel, strides=1, padding="SAME", dilations=self.dilation_rate)
        return tf.nn.bias_add(outputs, self.bias)


class UNetTower(keras.layers.Layer):
    """One U-Net of Spleeter's layout (Jansson et al., 2017; deezer/spleeter `apply_unet`): magnitude
    image (batch, T, F, C) -> sigmoid mask (batch, T, F, C), with T and F multiples of 2^depth.

    Down: a 5 x 5 convolution of stride 2 with `filters[i]` filters, batch normalisation, leaky ReLU
    (slope 0.2); the skips and the bottom of the U are the convolutions' outputs before normalisation.
    Up: a 5 x 5 transposed convolution of stride 2 (filters[depth-2], ..., filters[0], then 1), a ReLU,
    batch normalisation, dropout on the first three, joined after the skip of the same size. Last: a
    4 x 4 convolution of dilation 2 and a sigmoid, one mask per channel.

    In inference the batch normalisations are fused ops (`normalise`), and so are the upsampling
    layers' bias and ReLU (`rectified_bias`); see docs/separation.md for what each saves.
    """

    def __init__(self, filters, nb_channels: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.filters = tuple(filters)
        depth = len(self.filters)
        self.down = [Conv2D(f, 5, kernel_initializer="he_uniform", name=f"down_{i}")
                     for i, f in enumerate(self.filters)]
        # the deepest convolution's output goes up unnormalised, so it has no normalisation
        self.down_norm = [keras.layers.BatchNormalization(name=f"down_norm_{i}") for i in range(depth - 1)]
        up_filters = self.filters[-2::-1] + (1,)
        self.up = [_Upsample(f, 5, kernel_initializer="he_uniform", name=f"up_{i}")
                   for i, f in enumerate(up_filters)]
        self.up_norm = [keras.layers.BatchNormalization(name=f"up_norm_{i}") for i in range(depth)]
        self.dropout = keras.layers.Dropout(dropout, name="dropout")
        # the logits; the sigmoid is applied in `call`, where a mask power can scale them
        self.mask_layer = _DilatedConv(nb_channels, 4, dilation_rate=2, padding="same",
                                       kernel_initializer="he_uniform", name="mask")

    def call(self, x, training=False, logit_scale: float = 1.0):
        """(batch, T, F, C) image -> float32 mask sigmoid(logit_scale * logits) of that shape; a scale a
        gives power_mask(mask, a) exactly (see UNetGenerator.powered_mask)."""
        skips = []
        for i, conv in enumerate(self.down):                   # each halves frames and bins
            skips.append(conv(x, training=training))
            if i < len(self.down_norm):
                x = tf.nn.leaky_relu(normalise(self.down_norm[i], skips[-1], training), alpha=0.2)
        x = skips.pop()
        for i, (deconv, norm) in enumerate(zip(self.up, self.up_norm)):   # each doubles them
            x = normalise(norm, deconv(x, training=training), training)
            if i < 3:
                x = self.dropout(x, training=training)
            if skips:
                x = tf.concat([skips.pop(), x], axis=-1)
        logits = self.mask_layer(x, training=training)         # float32 (see compute_in)
        return tf.sigmoid(logits if logit_scale == 1.0 else logit_scale * logits)

    def compute_in(self, dtype: str) -> None:
        """Run the layers in `dtype` ("float32" or "bfloat16") for separation.

        The variables stay float32 (Keras' mixed policy casts them per call in training); in bfloat16
        the convolutions' weights are also frozen as bfloat16 constants for inference, so a tower must
        not be trained after `compute_in("bfloat16")`. The last convolution and the sigmoid stay float32
        whatever `dtype`: on CPU a bfloat16 sigmoid and a dilated convolution of one channel cost about
        twice their float32 forms, and bfloat16 would round a mask near 1 to steps of 2^-8."""
        policy = {"float32": "float32", "bfloat16": "mixed_bfloat16"}[dtype]
        for layer in [*self.down, *self.down_norm, *self.up, *self.up_norm, self.dropout]:
            layer.dtype_policy = policy
        for layer in [*self.down, *self.up]:
            layer.freeze(tf.bfloat16 if dtype == "bfloat16" else None)


class UNetGenerator(MaskGenerator):
    """Spleeter's U-Net (Jansson et al., 2017; deezer/spleeter) over the spectrogram as an image
    (nb_frames x bins x channels): one UNetTower per stem, at any width (`filters`; Spleeter's:
    16, 32, 64, 128, 256, 512).

    With one stem, the tower's sigmoid is the vocals mask. With two (vocals, accompaniment), as
    Spleeter's 2stems: each tower's mask times the band's magnitude is that stem's estimate, and the
    vocals mask is the ratio of squared estimates, (v^2 + eps / 2) / (v^2 + a^2 + eps).

    The input is padded with silent frames to a multiple of 2^depth frames and cropped back; with
    `segment_frames` (Spleeter: 512) it is cut into windows of that many frames, seen one by one, the
    first starting one silent frame before frame 0 as Spleeter's do. The band it sees (`nb_input_bins`,
    set by the factory to a multiple of 2^depth where the spectrum allows) is padded the same way. Bins
    above the band take the mask of the band's top bin (`mask_extension` "edge") or 0 ("zeros",
    Spleeter's). `dropout` applies to the first three upsampling layers, as Spleeter's 0.5 does.
    """

    def __init__(self, nb_bins: int, filters=(8, 16, 32, 64, 128, 256), nb_input_bins: int | None = None,
                 nb_channels: int = 1, dropout: float = 0.0, stems: int = 1, segment_frames: int | None = None,
                 mask_extension: str = "edge", compress_input: bool = True, **kwargs):
        super().__init__(nb_bins, nb_input_bins, nb_channels, dropout, compress_input, **kwargs)
        if stems not in (1, 2) or mask_extension not in MASK_EXTENSIONS:
            raise ValueError(f"stems={stems} must be 1 or 2; mask_extension={mask_extension!r} one of "
                             f"{MASK_EXTENSIONS}")
        self.filters = tuple(filters)
        self.multiple = 2 ** len(self.filters)
        if segment_frames is not None and segment_frames % self.multiple:
            raise ValueError(f"segment_frames={segment_frames} must be a multiple of 2^depth = {self.multiple}")
        self.stems, self.segment_frames, self.mask_extension = stems, segment_frames, mask_extension
        self.towers = [UNetTower(self.filters, nb_channels, dropout, name=name)
                       for name in ("vocals", "accompaniment")[:stems]]

    @property
    def mask_layer(self):
        """The vocals tower's last convolution (train.balance compares gradients at its kernel)."""
        return self.towers[0].mask_layer

    @property
    def receptive_frames(self) -> int | None:
        """An upper bound of the frames on each side that reach a frame's mask: with segments, the
        segment; else per level, the stride-2 5 x 5 convolution reaches 3 of its input's steps and the
        transposed one 2 of its output's, plus the final dilated 4 x 4 convolution's 4 frames."""
        return self.segment_frames or 5 * (self.multiple - 1) + 4

    @property
    def frame_multiple(self) -> int:
        """The segment, or 2^depth: the layers see the same frames only from a start on this grid."""
        return self.segment_frames or self.multiple

    def call(self, mixture_magnitude, training=False):
        """(batch, nb_frames, nb_features) -> mask (batch, nb_frames, nb_features).

        In the shape comments, T is nb_frames padded (with a lead frame, with segments) up to a
        multiple of 2^depth or of the segment, S the segments of T, F nb_input_bins padded up to a
        multiple of 2^depth, C nb_channels.
        """
        return self._whole_mask(mixture_magnitude, training, 1.0)

    def powered_mask(self, mixture_magnitude, power: float):
        """power_mask(mask, power) of the inference mask, (batch, nb_frames, nb_features) -> same shape.
        With one stem the power is folded into the tower's logits, exactly: for m = sigmoid(z),
        (1 - m) / m = exp(-z), so m^a / (m^a + (1 - m)^a) = sigmoid(a z), one multiply per value
        instead of a log and an exp."""
        if self.stems != 1:
            return power_mask(self(mixture_magnitude, training=False), power)
        return self._whole_mask(mixture_magnitude, False, power)

    def _whole_mask(self, mixture_magnitude, training, logit_scale: float):
        """`call` with the towers' logits scaled by `logit_scale` (see UNetTower.call)."""
        nb_frames = tf.shape(mixture_magnitude)[1]
        lead = SEGMENT_LEAD_FRAMES if self.segment_frames else 0
        pad_frames = (-(nb_frames + lead)) % (self.segment_frames or self.multiple)
        return self._mask(mixture_magnitude, lead, pad_frames, bool(self.segment_frames), training, logit_scale)

    def segment_mask(self, mixture_magnitude):
        """The mask of one segment as `call` cuts them (the first starting one silent frame before
        frame 0, the next segment_frames later, silent frames after the end), for block-wise inference
        (svsgan_tf.export.tflite): (batch, segment_frames, nb_features) -> mask of that shape."""
        return self._mask(mixture_magnitude, 0, 0, False, False)

    def _mask(self, mixture_magnitude, lead, pad_frames, segments: bool, training, logit_scale: float = 1.0):
        """`call`'s body: `lead` silent frames before and `pad_frames` after, cut into segments (or not),
        the towers' mask cropped back to the input's frames and extended above the band."""
        shape = tf.shape(mixture_magnitude)
        batch, nb_frames = shape[0], shape[1]
        pad_bins = (-self.nb_input_bins) % self.multiple
        bins = self.nb_input_bins + pad_bins
        # silent frames (magnitude 0, before any compression): (batch, T, C * nb_input_bins)
        band = tf.pad(self.band(mixture_magnitude), [[0, 0], [lead, pad_frames], [0, 0]])

        def image(x):
            # (batch, T, C * nb_input_bins) -> (batch, T, C, nb_input_bins)
            x = tf.reshape(x, [batch, -1, self.nb_channels, self.nb_input_bins])
            x = tf.transpose(x, [0, 1, 3, 2])              # (batch, T, nb_input_bins, C)
            return tf.pad(x, [[0, 0], [0, 0], [0, pad_bins], [0, 0]])     # (batch, T, F, C)

        x = image(self.compress(band))                     # (batch, T, F, C)
        magnitude = image(band)                            # (batch, T, F, C)
        if segments:
            # (batch, T, F, C) -> (batch * S, segment_frames, F, C)
            x = tf.reshape(x, [-1, self.segment_frames, bins, self.nb_channels])
            magnitude = tf.reshape(magnitude, [-1, self.segment_frames, bins, self.nb_channels])
        if segments and not training:
            # one segment at a time when separating: the activations of one segment, whatever the length
            mask = tf.map_fn(lambda pair: self.image_mask(pair[0][None], pair[1][None], False, logit_scale)[0],
                             (x, magnitude),
                             fn_output_signature=tf.TensorSpec([self.segment_frames, bins, self.nb_channels],
                                                               tf.float32), parallel_iterations=1)
        else:
            mask = self.image_mask(x, magnitude, training, logit_scale)
        # (batch * S, segment_frames, F, C) or (batch, T, F, C) -> (batch, T, F, C)
        mask = tf.reshape(mask, [batch, -1, bins, self.nb_channels])
        mask = mask[:, lead:lead + nb_frames, :self.nb_input_bins]   # (batch, nb_frames, nb_input_bins, C)
        if self.nb_input_bins < self.nb_bins:
            above = self.nb_bins - self.nb_input_bins
            top = (tf.repeat(mask[:, :, -1:], above, axis=2) if self.mask_extension == "edge"
                   else tf.zeros([batch, nb_frames, above, self.nb_channels]))
            mask = tf.concat([mask, top], axis=2)          # (batch, nb_frames, nb_bins, C)
        mask = tf.transpose(mask, [0, 1, 3, 2])            # (batch, nb_frames, C, nb_bins)
        # (batch, nb_frames, C, nb_bins) -> (batch, nb_frames, C * nb_bins)
        return tf.reshape(mask, [batch, nb_frames, self.nb_features])

    def compute_in(self, dtype: str) -> None:
        """Run the towers' layers in `dtype` ("float32" or "bfloat16", see UNetTower.compute_in)."""
        for tower in self.towers:
            tower.compute_in(dtype)

    @property
    def precision(self) -> str:
        """What the towers compute in: "float32" or "bfloat16" (`compute_in`)."""
        return str(self.towers[0].down[0].compute_dtype)

    def image_mask(self, x, magnitude, training=False, logit_scale: float = 1.0):
        """The vocals mask of images (n, T, F, C): the vocals tower's (its logits scaled by
        `logit_scale`, one stem only), or with two stems the ratio of the towers' squared estimates;
        `x` is what the towers see, `magnitude` the band's magnitude."""
        if self.stems != 1 and logit_scale != 1.0:
            raise ValueError("a logit scale is for one-stem U-Nets (see powered_mask)")
        masks = [tower(x, training=training, logit_scale=logit_scale) for tower in self.towers]
        if self.stems == 1:
            return masks[0]
        estimates = [tf.pow(m * magnitude, 2.0) for m in masks]
        return (estimates[0] + RATIO_EPSILON / self.stems) / (tf.reduce_sum(estimates, axis=0) + RATIO_EPSILON)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "stems": self.stems,
                "segment_frames": self.segment_frames, "mask_extension": self.mask_extension}


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
