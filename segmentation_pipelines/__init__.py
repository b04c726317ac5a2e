"""segmentation_pipelines."""
