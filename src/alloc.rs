//! Process-wide allocator setting for tensor-heavy work.
//!
//! Tensors are buffers of megabytes, allocated and freed many times per training step or
//! request. glibc's malloc serves such sizes with fresh `mmap`s and unmaps or trims them
//! on free, so every step page-faults its buffers in again (a third of a convolution's
//! backward on this project's shapes, see docs/benchmarks.md). Raised thresholds keep
//! freed memory in the process for the next step.

/// Blocks below this size come from malloc's heap, not from their own `mmap`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 256 << 20;
/// Free memory at the top of a heap is returned to the OS only above this size.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 1 << 30;
/// glibc's `mallopt` parameters (malloc.h).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const M_TRIM_THRESHOLD: i32 = -1;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const M_MMAP_THRESHOLD: i32 = -3;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" {
    /// glibc's malloc tuning call; returns 1 on success.
    fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
}

/// Makes glibc's malloc keep and reuse freed large blocks instead of returning them to
/// the OS; returns whether the allocator took the settings (`false` off glibc).
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets malloc tunables; it is thread-safe and callable anytime.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
