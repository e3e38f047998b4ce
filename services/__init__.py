"""The reference fleet: real services built on lockgate, one package each."""
