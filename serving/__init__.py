"""Serving: SavedModel export for TF Serving and its clients (grows with the serving work)."""
