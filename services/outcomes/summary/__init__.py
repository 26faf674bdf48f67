"""A patient's outcomes: `Patient/{id}/$outcomes` over the timeline tables."""
