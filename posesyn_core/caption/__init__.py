"""Descriptions of the hard poses: pose-derived (posecodes) offline, or a VLM through transformers."""
