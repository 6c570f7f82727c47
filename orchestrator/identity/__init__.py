"""Identity resolution: many identifiers, one canonical customer."""
