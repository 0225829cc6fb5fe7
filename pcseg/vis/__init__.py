"""Looking at results: plots (matplotlib, imported only when a plot is drawn)."""
