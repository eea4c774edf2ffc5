"""Example natgrad plugins (see the package's pyproject.toml for the entry points)."""
