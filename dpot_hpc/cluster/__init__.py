"""Cluster execution: the MPI driver (members handed out across ranks) and Slurm job arrays."""
