//! Optical flow: dual TV-L1, flow encoding and stacking, Middlebury .flo files.
