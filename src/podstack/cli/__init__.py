"""The ``podstack`` command line (Typer). Entry point: ``podstack.cli.main:app``."""
