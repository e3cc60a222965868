"""Command line (placeholder until the foundation CLI lands in this session)."""
