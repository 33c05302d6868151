"""Separation of waveforms: the Separator (STFT -> mask -> inverse STFT), chunking and file batches.

Importing this package imports nothing heavy: separation.chunking needs NumPy only.
"""
