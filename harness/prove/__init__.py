"""The proof: targets, verdicts, the probe engine."""
