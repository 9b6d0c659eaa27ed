"""Executors run a started execution: ``local`` (a subprocess on this host), ``webhook``
(a signed POST to an external orchestrator) and ``kubernetes`` (a Job)."""
