"""Training: the two-phase fit, its callbacks, resumable backups and tf.distribute strategies."""
