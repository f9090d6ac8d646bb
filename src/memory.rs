//! The process's memory allocator: mimalloc, for Rust's allocations and, through its
//! `override` feature, for the C library's `malloc` and `free` that librdkafka calls a few
//! times for every message it hands out.
//!
//! Replaying a million records (16-byte keys, 100-byte values), the process took 7.5 G
//! instructions with mimalloc where it took 9.6 G with glibc's allocator: librdkafka's parsing
//! of a message's headers took half as many, and glibc grew each thread's arena a little at a
//! time, with an `mprotect` call and the page faults after it.
//!
//! Huge pages are left to the system's setting (`no_thp`), as glibc leaves them: with mimalloc
//! asking for them, an idle replica was 30 MiB resident instead of 15 MiB, and partly used
//! 2 MiB pages counted whole.

/// The allocator of every Rust allocation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Hands memory that is free but still held by the allocator back to the operating system.
///
/// A replay passes its records through librdkafka's fetch queue, tens of MiB at a time; once
/// it has caught up, that memory sits free in the allocator's pages, counted as resident,
/// until allocations reuse it. For a million records that was 20 to 30 MiB, 20 to 30 bytes a
/// key; returning it took 2 to 3 ms.
pub fn release_free_memory() {
    // SAFETY: mimalloc may be called from any thread at any time; `force` only makes it
    // return more.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
