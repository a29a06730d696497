"""`wsdal` commands: info (being built)."""
