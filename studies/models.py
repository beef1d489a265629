"""Study, Series, Instance."""
