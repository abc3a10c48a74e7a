//! Reversible training's headline claim, guarded: activation memory of one training step
//! does not grow with depth. Byte counts are exact (a counting global allocator), so this
//! is no timed test; the bench `benches/revmem.rs` prints the full table.
//!
//! One test function: the allocator counts every thread of this binary, so two steps
//! measured at once would count each other.

#[path = "common/revmem.rs"]
mod revmem;

use revmem::{Kind, measure_pair};

/// Largest allowed ratio of activation bytes at 32 reversible units to those at 8.
const MAX_GROWTH: f64 = 1.1;

#[test]
fn reversible_activation_memory_is_flat_in_depth() {
    for kind in [Kind::Basic, Kind::Bottleneck] {
        let act = |units| {
            let pair = measure_pair(kind, units, 1, true).unwrap();
            assert!(
                pair.rev.grads > 0,
                "{kind:?}: the step returned no gradients"
            );
            (pair.plain.activations(), pair.rev.activations())
        };
        let ((plain_shallow, shallow), (plain_deep, deep)) = (act(8), act(32));
        assert!(
            shallow > 0,
            "{kind:?}: nothing counted (allocator not installed?)"
        );
        // The measurement sees depth: plain autograd keeps every unit's activations.
        assert!(
            plain_deep as f64 >= 1.5 * plain_shallow as f64,
            "{kind:?}: plain autograd's activations {plain_shallow} -> {plain_deep} bytes"
        );
        let growth = deep as f64 / shallow as f64;
        assert!(
            growth <= MAX_GROWTH,
            "{kind:?}: reversible activations grew {growth:.2}x from 8 to 32 units \
             ({shallow} -> {deep} bytes), more than {MAX_GROWTH}x"
        );
    }
}
