"""Converters from real dataset formats to the original Glow release's TFRecords."""
