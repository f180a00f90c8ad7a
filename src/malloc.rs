//! How the process's allocator is set up: one glibc malloc arena, and
//! blocks of a mebibyte or more always mapped on their own.
//!
//! glibc gives each thread that allocates under contention its own arena
//! (up to eight per core), and memory freed into one arena is reused only
//! by the threads attached to it; an arena gives pages back to the system
//! only from its top. A run allocates on two runtime workers, the state
//! writer and dozens of short-lived blocking threads (file writes and
//! fsyncs of the download pool), so its resident size ends up near the sum
//! of every arena's high-water mark, not the heap it uses: at 100,000 items
//! 107 MB resident for a heap that never passed 41 MB (heaptrack). With one
//! arena the same run peaked at 59–69 MB. The price is lock contention on
//! that arena: on the loaded 2-core VM, 20k-item runs took 18–21 CPU s
//! against 13–17 s with the default (`benches/README.md`, rows (d), (e));
//! on an idle VM the two could not be told apart.
//! A periodic `malloc_trim` instead (74 MB) and fewer blocking threads
//! (108 MB) did not come close.
//!
//! The mapping threshold: glibc raises it by itself to the size of the
//! largest mapped block freed (up to 32 MiB), after which the start's large
//! one-off vectors (the progress records of every item, ~13 MB at 100k)
//! come from the heap, and the heap never hands that room back — the run's
//! later allocations sit above it. Fixed at 1 MiB, they are mapped and
//! unmapped whole: 50.7 → 46.4 MB at 100k items. A download's 256 KiB write
//! buffer stays below it (mapping it per video would cost page faults).

/// Blocks at least this large are mapped on their own and unmapped on free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 1 << 20;

/// Use one malloc arena for the whole process, and map large blocks on
/// their own. Call first thing in `main`, before any other thread exists;
/// a no-op where the C library is not glibc.
pub fn set_up() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets parameters of the allocator; it is called
    // before any other thread is started, so no allocation races with it.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}
