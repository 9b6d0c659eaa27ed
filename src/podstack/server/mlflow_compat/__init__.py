"""The MLflow REST API served on Podstack's own data (issue 17).

``routes.mount(app)`` serves it under ``/api/2.0/mlflow``, ``/api/2.0/mlflow-artifacts`` and
``/api/3.0/mlflow/server-info``. The package is named so that ``app.py``'s convention
(``<capability>/endpoints.py`` under ``/api/v1``) does not pick it up: its routes live at
MLflow's paths and answer with MLflow's error JSON (``errors.py``), nowhere else.
"""
