"""validate: train growth schedules for real, measure them, and check costsim's predictions."""
