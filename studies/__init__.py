"""Studies: ingestion from the hospitals, storage, DICOMweb and rendering."""
