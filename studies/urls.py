"""DICOMweb URLs, mounted under /dicomweb/."""

urlpatterns: list = []
