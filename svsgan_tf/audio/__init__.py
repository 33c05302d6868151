"""Audio front end: decoding, validation, resampling and writing files; the in-graph STFT (audio.spectral)."""
