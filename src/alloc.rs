//! The allocator of the binaries and benchmarks: mimalloc, set never to hand freed pages back to
//! the OS.
//!
//! A training step allocates and frees the same large activation and gradient buffers every
//! step. glibc's malloc serves each from a fresh `mmap` and unmaps it on free, and mimalloc with
//! its default purge delay returns the pages too, so every step faulted in (and zeroed) its
//! memory again: measured with `cargo bench --bench compare` on the MiniLM step (flex, one
//! thread), 6.0 s with glibc, 5.3 s with mimalloc's defaults, 3.9 s without purging. The peak
//! resident memory stays what it was; it is just not returned between steps.
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: manifold_lora::alloc::Allocator = manifold_lora::alloc::Allocator;
//! fn main() {
//!     manifold_lora::alloc::keep_freed_memory();
//! }
//! ```

/// The global allocator type the binaries declare.
pub use mimalloc::MiMalloc as Allocator;

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (the Rust bindings do not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc to keep freed pages for reuse instead of returning them to the OS.
pub fn keep_freed_memory() {
    // SAFETY: sets an integer option; mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option is the purge delay: mimalloc's own accessor reads back what was set, and its
    /// documented default (1,000 ms in mimalloc v3) is what index 15 held before.
    #[test]
    fn the_option_set_is_the_purge_delay() {
        // SAFETY: reads and sets integer options.
        let before = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert!(
            before == 1000 || before == -1,
            "purge delay default, got {before}"
        );
        keep_freed_memory();
        let after = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(after, -1);
    }
}
