//! The two-stream Spatiotemporal ResNet, its convolutions and reversible units.

pub mod conv;
