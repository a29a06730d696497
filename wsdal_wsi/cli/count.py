"""`wsdal` commands: count (being built)."""
