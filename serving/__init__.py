"""TF Serving for svsgan_tf: a PredictionService-compatible gRPC server and a separation client."""
