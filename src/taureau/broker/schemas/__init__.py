"""The schema registry: schemas stored per topic with versions, and compatibility checks."""
