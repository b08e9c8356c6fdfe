"""Research variants, one file each, plugged into the tables of bertclf/swaps (see docs/VARIANTS.md)."""
