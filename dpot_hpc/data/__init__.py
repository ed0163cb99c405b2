"""Data: HDF5 files written atomically, catalogue tables, the prepared sample, the built-in mock file,
gradient caches, and the run folder that owns every path of a run."""
