"""`wsdal` commands: qupath (being built)."""
