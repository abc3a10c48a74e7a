//! Training: datasets, MotionShapes synthesis, reversible backpropagation.

pub mod revprop;
