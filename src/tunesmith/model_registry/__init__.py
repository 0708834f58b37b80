"""The model registry: versions with lineage, stages with one champion per name, content-addressed weights."""
