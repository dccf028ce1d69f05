"""Airflow hooks of the pipeline: the one HTTP client layer and the per-service hooks.

``http_client.ApiHttpHook`` holds TLS, retries, backoff and concurrency for every API;
``powerschool.PowerSchoolHook`` (SIS reads, OAuth, paging quirks) and
``learning.LearningHook`` build on it.
"""
