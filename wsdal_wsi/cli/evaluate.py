"""`wsdal` commands: evaluate (being built)."""
