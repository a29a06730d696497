"""`wsdal` commands: predict (being built)."""
