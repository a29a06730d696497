"""``python -m wsdal_wsi`` runs the ``wsdal`` command line."""

from wsdal_wsi.cli import main

main()
