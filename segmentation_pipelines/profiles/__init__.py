"""The profile store: datasets on disk, XDM schema, identity stitching, merge policies, demo data generator.

No Dagster, FastAPI or catalog here: functions take folders and plain values and return tables and statistics.
"""
