"""Domain, data: dataset schemas, sources (synthetic, packaged, files), validation and cleaning,
reference profiles. No ZenML, no platform."""
