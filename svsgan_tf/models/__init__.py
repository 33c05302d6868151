"""Generators and discriminator of SVSGAN, and building them from a Config."""
from svsgan_tf.models.discriminator import Discriminator
from svsgan_tf.models.generator import (EncoderGenerator, EnsembleGenerator, MaskGenerator, RNNGenerator,
                                       UNetGenerator)
from svsgan_tf.models.factory import build_discriminator, build_generator

__all__ = ["Discriminator", "EncoderGenerator", "MaskGenerator", "RNNGenerator",
           "build_discriminator", "build_generator"]
