"""proselflc."""
