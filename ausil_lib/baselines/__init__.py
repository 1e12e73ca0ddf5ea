"""The methods AuSiL is compared with (Dejavu on a throwaway PostgreSQL, spectrogram baselines); never AuSiL's model."""
