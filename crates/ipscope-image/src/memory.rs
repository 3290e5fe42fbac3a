//! Memory for whole images: a process allocator (the system allocator, with transparent
//! huge pages asked for on the large blocks that hold whole images) and the glibc settings
//! that keep freed images in the process. The `ipscope` CLI installs both first thing in
//! `main`; a program that links the library can do the same:
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOC: ipscope_image::memory::HugeImages = ipscope_image::memory::HugeImages;
//!
//! fn main() {
//!     ipscope_image::memory::keep_freed_memory();
//!     // ...
//! }
//! ```
//!
//! A field's work runs through a few full-size images (megabytes each), which glibc keeps
//! on its heap from field to field ([`keep_freed_memory`]). In 4 KiB pages a
//! 2048² field's images take tens of thousands of page faults the first time and as many
//! TLB misses every pass over them; on kernels that give huge pages only where asked
//! (`/sys/kernel/mm/transparent_hugepage/enabled` = `madvise`, the common default) this
//! asks for them on every block of `HUGE` bytes or more, as glibc's own
//! `glibc.malloc.hugetlb=1` tunable does for its whole heap. Small blocks are left alone, so
//! memory is not rounded up to 2 MiB for them. Where the kernel refuses, nothing changes.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks of this size or more are advised to use huge pages.
const HUGE: usize = 4 << 20;

/// The size of a transparent huge page on x86-64 and most aarch64 kernels.
#[cfg(target_os = "linux")]
const HUGE_PAGE: usize = 2 << 20;

/// The system allocator, asking for huge pages on blocks of `HUGE` bytes or more.
pub struct HugeImages;

/// Advises the kernel to back the whole huge pages inside `[ptr, ptr + size)` with huge
/// pages. The advice is best-effort: an error only means 4 KiB pages, as without it.
fn advise_huge(ptr: *mut u8, size: usize) {
    #[cfg(target_os = "linux")]
    if !ptr.is_null() && size >= HUGE {
        let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
        let end = (ptr as usize + size) & !(HUGE_PAGE - 1);
        if end > start {
            // SAFETY: `[start, end)` lies inside the block just allocated, which is mapped
            // memory of this process; MADV_HUGEPAGE changes only how pages are backed, never
            // their contents.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, size);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// advice afterwards neither moves nor changes the memory returned.
unsafe impl GlobalAlloc for HugeImages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller keeps `GlobalAlloc::alloc`'s contract, passed on as is.
        let ptr = unsafe { System.alloc(layout) };
        advise_huge(ptr, layout.size());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        advise_huge(ptr, layout.size());
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller keeps `GlobalAlloc::dealloc`'s contract, passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller keeps `GlobalAlloc::realloc`'s contract, passed on as is.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        advise_huge(new, new_size);
        new
    }
}

/// Keeps freed memory in the process for the next field instead of returning it to the
/// kernel (glibc): a field's full-size intermediate images (tens of MB each) are otherwise
/// handed back on free and come back as fresh pages the kernel must zero, about a quarter
/// of a run's CPU time on 2048² fields. Allocations up to 32 MiB stay on the heap, and the
/// heap is trimmed only past 2 GiB free; peak memory stays that of one field per thread.
///
/// All threads share the main arena: glibc gives each worker thread its own arena of 64 MiB
/// heaps and unmaps a heap as soon as it is empty, whatever the trim threshold, so a
/// worker's full-size images came back as fresh pages every field (405,000 page faults on 8
/// fields of 2048², against 65,000 with one arena, which is the peak memory faulted in once).
/// The per-field allocations are few and large, so the shared arena's lock is not contended.
///
/// Call it first thing in `main`, before any other thread exists. Elsewhere than Linux with
/// glibc it does nothing.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; the caller calls this first thing
    // in `main`, before any other thread exists (as documented).
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allocates `size` bytes aligned to `align` with `HugeImages`.
    fn alloc(size: usize, align: usize) -> (*mut u8, Layout) {
        let layout = Layout::from_size_align(size, align).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { HugeImages.alloc(layout) };
        assert!(!ptr.is_null(), "allocation of {size} bytes failed");
        assert_eq!(ptr as usize % align, 0, "alignment {align} not kept");
        (ptr, layout)
    }

    #[test]
    fn blocks_keep_their_contents_through_resizes_across_the_threshold() {
        for &(from, to) in &[
            (100, HUGE * 2),
            (HUGE * 2, 100),
            (HUGE, HUGE * 3),
            (HUGE * 3, HUGE + 1),
        ] {
            let (ptr, layout) = alloc(from, 64);
            // SAFETY: `ptr` holds `from` bytes; written before the resize, read after it up
            // to the smaller size, then freed with the layout of its size.
            unsafe {
                for i in 0..from {
                    *ptr.add(i) = (i % 251) as u8;
                }
                let new = HugeImages.realloc(ptr, layout, to);
                assert!(!new.is_null());
                for i in 0..from.min(to) {
                    assert_eq!(*new.add(i), (i % 251) as u8, "byte {i} of {from} -> {to}");
                }
                HugeImages.dealloc(new, Layout::from_size_align(to, 64).expect("valid layout"));
            }
        }
        let layout = Layout::from_size_align(HUGE * 2, 4096).expect("valid layout");
        // SAFETY: non-zero size; the block is read within its size and freed with its layout.
        unsafe {
            let z = HugeImages.alloc_zeroed(layout);
            assert!(!z.is_null());
            assert!(std::slice::from_raw_parts(z, HUGE * 2)
                .iter()
                .all(|&b| b == 0));
            HugeImages.dealloc(z, layout);
        }
    }

    /// The kernel records the advice on a large block's whole huge pages (`hg` in the
    /// mapping's `VmFlags`).
    #[cfg(target_os = "linux")]
    #[test]
    fn large_blocks_are_advised_to_use_huge_pages() {
        if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() {
            eprintln!("skipped: this kernel has no transparent huge pages");
            return;
        }
        /// The `VmFlags` of the mapping that holds `addr`, from /proc/self/smaps.
        fn flags_at(addr: usize) -> String {
            let smaps = std::fs::read_to_string("/proc/self/smaps").expect("read smaps");
            let mut inside = false;
            for line in smaps.lines() {
                let range = line.split_whitespace().next().unwrap_or("");
                if let Some((a, b)) = range.split_once('-') {
                    if let (Ok(a), Ok(b)) =
                        (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                    {
                        inside = (a..b).contains(&addr);
                        continue;
                    }
                }
                if inside {
                    if let Some(f) = line.strip_prefix("VmFlags:") {
                        return f.trim().to_string();
                    }
                }
            }
            panic!("no mapping holds {addr:#x}");
        }
        let (big, big_layout) = alloc(HUGE * 2, 8);
        let inner = (big as usize).next_multiple_of(HUGE_PAGE);
        let flags = flags_at(inner);
        // SAFETY: the block was allocated above with this layout.
        unsafe { HugeImages.dealloc(big, big_layout) };
        assert!(
            flags.split_whitespace().any(|f| f == "hg"),
            "no huge-page advice on a {} MiB block: VmFlags {flags}",
            (HUGE * 2) >> 20
        );
    }
}
