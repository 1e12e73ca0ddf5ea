"""Results for readers: notebook tables and figures, and the README's generated tables."""
