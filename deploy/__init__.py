"""Tools that build, measure and describe the Function Compute deployment."""
