"""Build generators and discriminators from a Config alone."""
from __future__ import annotations

from svsgan_tf.config import GENERATORS, Config
from svsgan_tf.errors import ConfigError
from svsgan_tf.models.discriminator import Discriminator
from svsgan_tf.models.generator import EncoderGenerator, MaskGenerator, RNNGenerator, UNetGenerator


def build_generator(config: Config) -> MaskGenerator:
    """The generator named by config.model.generator, built (weights created)."""
    model, nb_bins = config.model, config.stft.nb_bins
    nb_input_bins = config.stft.bins_below(model.max_frequency)
    if model.generator == "encoder":
        generator = EncoderGenerator(nb_bins, model.encoder_units, model.decoder_units, nb_input_bins,
                                     model.nb_channels, model.dropout, compress_input=model.compress_input,
                                     name="generator")
    elif model.generator == "rnn":
        generator = RNNGenerator(nb_bins, model.encoder_units, model.decoder_units, model.lstm_units,
                                 model.bidirectional, nb_input_bins, model.nb_channels, model.dropout,
                                 compress_input=model.compress_input, name="generator")
    elif model.generator == "unet":
        # the band rounded up to a multiple of the U-Net's 2^depth, as far as the spectrum reaches
        multiple = 2 ** len(model.unet_filters)
        nb_unet_bins = min(nb_bins, -(-nb_input_bins // multiple) * multiple)
        generator = UNetGenerator(nb_bins, model.unet_filters, nb_unet_bins, model.nb_channels,
                                  model.dropout, model.unet_stems, model.unet_segment_frames,
                                  model.unet_mask_extension, model.compress_input, name="generator")
    else:
        raise ConfigError(f"config: model.generator={model.generator!r} unknown generator, "
                          f"expected one of {', '.join(GENERATORS)}")
    generator.create_weights()
    return generator


def build_discriminator(config: Config) -> Discriminator:
    """The conditional discriminator of config.model, built."""
    discriminator = Discriminator(config.nb_features, config.model.discriminator_units,
                                  name="discriminator")
    discriminator.create_weights()
    return discriminator
