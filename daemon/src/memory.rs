//! Process-wide allocator settings.

/// Makes glibc serve every allocation of 256 KiB or more (row batches are
/// 1 MiB) with its own mapping, returned to the kernel when freed.
///
/// By default glibc raises that threshold as big blocks are freed, after
/// which freed batches stay in per-thread arenas: peak RSS then grew by
/// about 13 MiB per lane (141 MiB at `parallelism = 8` on dataset d)
/// although the bytes really held are capped by the copy's memory budget.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called once,
    // at start-up, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}
