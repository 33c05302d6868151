"""KerasTuner search over SVSGAN training settings (batch size, optimizer, learning rate)."""
