"""Runnable mini-projects: a real shop, wrapped by one line and a YAML file (see each README)."""
