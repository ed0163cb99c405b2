"""Models: the DF flows and the potential network, and how each is trained (checkpointable loops)."""
