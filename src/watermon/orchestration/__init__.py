"""What Airflow needs from watermon: a light layout for parsing DAGs, and task functions.

``layout`` is imported when DAG files are parsed and must stay light (no pydantic,
SQLAlchemy or numpy); ``tasks`` is imported inside task functions only.
"""
