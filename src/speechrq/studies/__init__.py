"""Studies that train as well as evaluate (they sit above pre-training and evaluation): the layer-choice study."""
