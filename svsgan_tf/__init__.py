"""svsgan_tf: singing voice separation with a conditional GAN (SVSGAN) in TensorFlow/Keras.

Importing the package is cheap; TensorFlow is loaded by the modules that need it.
"""
__version__ = "0.1.0"
