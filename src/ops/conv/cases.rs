//! The convolutions the conv op is measured on (issue #11's shapes, r50's and the
//! temporal 3x1), one list for `benches/conv.rs` on the CPU and `revstream-gpu-check`'s
//! conv section on the GPU, so both report the same rows.

use super::ConvConfig;

/// One measured convolution.
pub struct ConvCase {
    /// Row name in the tables.
    pub name: &'static str,
    /// Input `(N, C, H, W)`.
    pub x: (usize, usize, usize, usize),
    /// Output channels.
    pub c_out: usize,
    /// Kernel, stride, padding, groups.
    pub cfg: ConvConfig,
}

impl ConvCase {
    /// A network's first layer (the stems): its input is the data, so training computes
    /// no input gradient for it.
    pub fn first_layer(&self) -> bool {
        self.name.contains("stem")
    }
}

/// The measured convolutions, in table order.
pub fn benchmark_cases() -> Vec<ConvCase> {
    let sq = ConvConfig::square;
    let case = |name, x, c_out, cfg| ConvCase {
        name,
        x,
        c_out,
        cfg,
    };
    vec![
        case("3x3_32x16x56", (32, 16, 56, 56), 16, sq(3, 1, 1)),
        case("3x3_32x64x14", (32, 64, 14, 14), 64, sq(3, 1, 1)),
        case("stem7x7s2_32x3x112", (32, 3, 112, 112), 16, sq(7, 2, 3)),
        case(
            "flowstem7x7s2_32x20x112",
            (32, 20, 112, 112),
            16,
            sq(7, 2, 3),
        ),
        case("3x3_8x64x56", (8, 64, 56, 56), 64, sq(3, 1, 1)),
        case("r50_1x1_8x64x56", (8, 64, 56, 56), 64, sq(1, 1, 0)),
        case("r50_3x3_8x128x28", (8, 128, 28, 28), 128, sq(3, 1, 1)),
        case("r50_3x3_8x256x14", (8, 256, 14, 14), 256, sq(3, 1, 1)),
        case("r50_stem7x7s2_8x3x224", (8, 3, 224, 224), 64, sq(7, 2, 3)),
        case(
            "temporal3x1_8x64x56",
            (8, 64, 56, 56),
            64,
            ConvConfig {
                kernel: (3, 1),
                stride: (1, 1),
                padding: (1, 0),
                groups: 1,
            },
        ),
    ]
}
