//! The allocator Ember runs on: mimalloc (the `ember` binary and the benchmarks install it as
//! the global allocator), told to keep the memory it frees.

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (a stable option, same index in
/// mimalloc v2 and v3): milliseconds before freed memory is given back to the OS, `-1` for
/// never. `libmimalloc-sys` exposes `mi_option_set` but not this constant.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Makes mimalloc keep the memory it frees instead of returning it to the OS after 10 ms.
///
/// A query allocates and frees large buffers (decoded Parquet pages, hash tables, shuffle
/// batches) over and over; returned memory comes back as fresh pages the kernel must fault in
/// and zero. On the 22 TPC-H queries at SF 1 that was 18–22 thousand page faults and 10 % of
/// all CPU samples in `clear_page`; keeping freed memory cut the faults to 1.2 thousand and
/// the run from 6.1–6.3 s to 5.6 s (`perf stat -r 2`, same window). The cost: the process
/// keeps its high-water mark of memory after a large query (peak memory is unchanged), as
/// engines with their own buffer pools do. Harmless when mimalloc is not the global
/// allocator (it only configures mimalloc's own heaps).
pub fn keep_freed_memory() {
    // SAFETY: sets a process-wide mimalloc option; any value is valid, at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}
