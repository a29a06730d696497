"""`wsdal` commands: demo (being built)."""
