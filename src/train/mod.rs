//! Training: datasets, MotionShapes synthesis, reversible backpropagation.
