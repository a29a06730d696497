"""`wsdal` commands: synth (being built)."""
