"""Swap points: name → function tables that train.py looks up by flag (--head, --loss, --optimizer, --step,
--dropout_masks). A new entry is a function plus one line in its table; docs/VARIANTS.md has the contracts."""
