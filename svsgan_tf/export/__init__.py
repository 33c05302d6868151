"""Export of a trained model for deployment: a SavedModel for TF Serving (export.savedmodel)."""
