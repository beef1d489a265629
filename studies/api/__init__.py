"""HTTP interfaces of the studies app: DICOMweb and the REST study lists."""
