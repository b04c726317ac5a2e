"""Segment search: the Lucene query subset (``lucene``) and the in-memory full-text index (``index``).

No catalog, FastAPI or Dagster here; :mod:`segmentation_pipelines.service.search` feeds it the sandbox's folders
and audiences and shapes the answers of ``/search/*``.
"""
