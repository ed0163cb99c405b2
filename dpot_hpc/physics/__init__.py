"""Physics: frames, Gaia observables, the analytic galaxy, the CBE, the exact mocks and the reported
scalars. Pure functions over tensors and arrays; no I/O, no configuration, no scheduling."""
