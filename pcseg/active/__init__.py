"""Active labelling: choosing which points a person labels next, and reading their answers."""
