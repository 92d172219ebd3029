"""Model families: per family a config reader, a table of its tensors (table.py) and the model classes."""
