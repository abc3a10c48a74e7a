//! The arithmetic of turning decoded frames and quantised flow into the network's input
//! values: one definition, used by the server's pipeline and the trainer's batches alike,
//! so a model sees in serving exactly what it was trained on.

/// Channel `c` of an interleaved RGB frame, normalised: `(v / 255 - mean) / std`.
pub fn rgb_channel(data: &[u8], c: usize, mean: f32, std: f32) -> impl Iterator<Item = f32> + '_ {
    data.iter()
        .skip(c)
        .step_by(3)
        .map(move |&v| (v as f32 / 255.0 - mean) / std)
}

/// An 8-bit flow plane (`flow::encode::quantize`) as the network sees it: -1..1.
pub fn flow_plane(q: &[u8]) -> impl Iterator<Item = f32> + '_ {
    q.iter().map(|&v| v as f32 * (2.0 / 255.0) - 1.0)
}
