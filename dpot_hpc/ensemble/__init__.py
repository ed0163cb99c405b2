"""Ensembles: the plan of members per uncertainty pipeline, running one member, the statistics over
members, the summary files and the scheduler's cost model."""
