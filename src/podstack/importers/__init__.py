"""Importers: copy data from other systems into Podstack through its SDK (``podstack import``)."""
