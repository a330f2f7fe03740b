"""Domain, reporting: self-contained HTML, run summaries (console, JSON, Markdown), provenance."""
