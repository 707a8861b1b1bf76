"""Pages of the documentation site generated from the code at build time (docs/gen_pages.py)."""
