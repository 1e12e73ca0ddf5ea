"""The networks: the MAC backbone and its training, AuSiL and its training, the authors' released weights."""
