"""Training recipes for the weights keras-hyper trains and ships itself."""
