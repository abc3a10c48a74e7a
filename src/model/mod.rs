//! The two-stream Spatiotemporal ResNet, its convolutions and reversible units.

pub mod add_relu;
pub mod blocks;
pub mod bn_train;
pub mod config;
pub mod conv;
pub mod norm;
pub mod reversible;
pub mod st_resnet;
pub mod sums;
pub mod temporal;

pub use config::Config;
pub use st_resnet::{StResNet, StreamLogits};
