"""`wsdal` commands: train (being built)."""
