"""Data sets, uploaded images and the gallery's example images."""
