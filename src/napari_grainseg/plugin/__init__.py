"""napari integration: reader, sample data and dock widgets (thin layers over the core)."""
