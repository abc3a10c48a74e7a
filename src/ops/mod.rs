//! Compute kernels as candle custom ops: the network's layers call them, and they know
//! nothing of the network. Convolution (CPU GEMMs, cuDNN), training-mode BatchNorm fused
//! with ReLU, add + ReLU, and the lane-wise sums they share.

pub mod add_relu;
pub mod bn_train;
pub mod conv;
pub mod kernel;
pub mod sums;
