"""Training data: real data sets, seeded synthetic multitracks and the tf.data pipeline."""
