"""Litestar controllers, one module per resource (registered in gateway/routes.py's ROUTES)."""
