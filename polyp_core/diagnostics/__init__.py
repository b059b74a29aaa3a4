"""Diagnostics over feature matrices: features (``features``) first; KID/FID, projections and
memorisation build on them."""
