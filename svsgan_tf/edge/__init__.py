"""Separation on edge devices with a converted .tflite model: NumPy and ai-edge-litert, no TensorFlow.

    from svsgan_tf.edge import EdgeSeparator, StreamingSeparator
    stems = EdgeSeparator("model.tflite").separate(audio, sample_rate)

Convert a model with `python -m svsgan_tf.tflite`; separate files with `python -m svsgan_tf.edge`.
"""
from svsgan_tf.edge.runner import EdgeSeparator, StreamingSeparator

__all__ = ["EdgeSeparator", "StreamingSeparator"]
