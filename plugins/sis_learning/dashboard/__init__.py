"""The Districts pages inside the Airflow UI (an Airflow 3 plugin: a FastAPI app and its nav entry).

``queries`` reads the staging database, ``charts`` draws inline SVG, ``app`` serves the
pages behind Airflow's authentication; ``plugins/sis_learning_dashboard.py`` registers them.
"""
