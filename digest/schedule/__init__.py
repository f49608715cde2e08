"""When to run: the schedule maths, the run record, the scheduler and its installers."""
