"""natgrad: natural-gradient optimization, reference implementation."""
