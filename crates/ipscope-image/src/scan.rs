//! Finding the end of a run in a row: the next element that differs from a value, or the
//! next zero, a block of elements at a time.
//!
//! Label images and masks of nuclei fields are mostly background, so the passes over them
//! (areas, bounding boxes, renumbering, labelling, the distance transform's rows) spend
//! most of their time skipping zeros. `iter().position` tests one element per step (a loop
//! with an early exit does not vectorise); these test a block of 16 with one comparison of
//! its OR (or AND) and fall back to one element at a time inside the block that holds the
//! answer. Each is checked against `position` in the tests below.

/// Elements tested together.
const BLOCK: usize = 16;

/// The index of the first element of `v` at or after `from` that is not `x`; `v.len()` when
/// none is.
#[inline]
pub fn next_other_u32(v: &[u32], from: usize, x: u32) -> usize {
    let mut i = from.min(v.len());
    for block in v[i..].chunks_exact(BLOCK) {
        if block.iter().fold(0, |a, &y| a | (y ^ x)) != 0 {
            break;
        }
        i += BLOCK;
    }
    v[i..]
        .iter()
        .position(|&y| y != x)
        .map_or(v.len(), |n| i + n)
}

/// The index of the first zero of `v` at or after `from`; `v.len()` when there is none.
#[inline]
pub fn next_zero_u32(v: &[u32], from: usize) -> usize {
    let mut i = from.min(v.len());
    for block in v[i..].chunks_exact(BLOCK) {
        if !block.iter().fold(true, |a, &y| a & (y != 0)) {
            break;
        }
        i += BLOCK;
    }
    v[i..]
        .iter()
        .position(|&y| y == 0)
        .map_or(v.len(), |n| i + n)
}

/// The index of the first element of `v` at or after `from` that differs from `b`;
/// `v.len()` when none does.
#[inline]
pub fn next_other_bool(v: &[bool], from: usize, b: bool) -> usize {
    // SAFETY: a bool is one byte holding 0 or 1, so its slice reads as bytes.
    let bytes = unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), v.len()) };
    let x = u8::from(b);
    let mut i = from.min(v.len());
    for block in bytes[i..].chunks_exact(2 * BLOCK) {
        if block.iter().fold(0, |a, &y| a | (y ^ x)) != 0 {
            break;
        }
        i += 2 * BLOCK;
    }
    // Then eight bytes at a time: the first byte that differs is the lowest non-zero byte
    // of the word XOR `x` in every byte (a byte-by-byte `position` is a branch per byte).
    let pattern = u64::from_le_bytes([x; 8]);
    let mut words = bytes[i..].chunks_exact(8);
    for w in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        let d = u64::from_le_bytes(word) ^ pattern;
        if d != 0 {
            return i + (d.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&y| y != x)
        .map_or(v.len(), |n| i + n)
}

/// Calls `f(start, end, value)` for each run of equal non-zero values of `row`
/// (`row[start..end]` all equal `value`), left to right.
#[inline]
pub fn for_each_nonzero_run(row: &[u32], mut f: impl FnMut(usize, usize, u32)) {
    let mut c = next_other_u32(row, 0, 0);
    while c < row.len() {
        let l = row[c];
        let e = next_other_u32(row, c + 1, l);
        f(c, e, l);
        c = if e < row.len() && row[e] == 0 {
            next_other_u32(row, e + 1, 0)
        } else {
            e
        };
    }
}

/// Asks the processor to bring `v` into its caches ahead of use (a hint: nothing changes
/// when it does not). For passes that read a row only where objects are, sparsely: the
/// hardware prefetchers follow dense reads, not the few lines each object touches, so
/// without the hint every object's part of a row waits on memory.
#[inline]
pub fn prefetch<T>(v: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let (start, len) = (v.as_ptr() as usize, std::mem::size_of_val(v));
        let mut at = start & !63;
        while at < start + len {
            // SAFETY: a prefetch is a hint that never faults and reads nothing into the
            // program's state; the addresses lie in (or on a cache line shared with) `v`.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(
                    at as *const i8,
                );
            }
            at += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of random runs, from sparse to dense, and degenerate ones.
    fn rows() -> Vec<Vec<u32>> {
        // A linear congruential generator (Knuth's MMIX constants).
        let mut state = 0x9e37_79b9u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let mut out = vec![vec![], vec![0; 100], vec![7; 100], vec![0; 16], vec![3; 32]];
        for len in [1usize, 15, 16, 17, 31, 33, 64, 100, 257] {
            for density in [1u32, 8, 64, 256] {
                let mut row = vec![0u32; len];
                let mut c = 0;
                while c < len {
                    let run = (next() % 40) as usize + 1;
                    let v = if next() % 256 < density {
                        next() % 4
                    } else {
                        0
                    };
                    for x in row.iter_mut().skip(c).take(run) {
                        *x = v;
                    }
                    c += run;
                }
                out.push(row);
            }
        }
        out
    }

    #[test]
    fn block_scans_equal_position() {
        for row in rows() {
            let n = row.len();
            for from in 0..=n + 1 {
                let tail = from.min(n);
                for x in [0u32, 1, 2, 3, 7] {
                    let want = row[tail..]
                        .iter()
                        .position(|&y| y != x)
                        .map_or(n, |k| tail + k);
                    assert_eq!(next_other_u32(&row, from, x), want, "{row:?} {from} {x}");
                }
                let want = row[tail..]
                    .iter()
                    .position(|&y| y == 0)
                    .map_or(n, |k| tail + k);
                assert_eq!(next_zero_u32(&row, from), want, "{row:?} {from}");
                let mask: Vec<bool> = row.iter().map(|&y| y != 0).collect();
                for b in [false, true] {
                    let want = mask[tail..]
                        .iter()
                        .position(|&y| y != b)
                        .map_or(n, |k| tail + k);
                    assert_eq!(next_other_bool(&mask, from, b), want, "{mask:?} {from} {b}");
                }
            }
        }
    }

    #[test]
    fn runs_cover_every_nonzero_pixel_once() {
        for row in rows() {
            let mut seen = vec![0u32; row.len()];
            let mut last_end = 0;
            for_each_nonzero_run(&row, |s, e, l| {
                assert!(
                    s >= last_end && s < e && l != 0,
                    "{row:?}: run {s}..{e} of {l}"
                );
                // Maximal: the pixels either side hold another value.
                assert!(s == 0 || row[s - 1] != l);
                assert!(e == row.len() || row[e] != l);
                for (k, x) in seen.iter_mut().enumerate().take(e).skip(s) {
                    assert_eq!(row[k], l);
                    *x = l;
                }
                last_end = e;
            });
            assert_eq!(seen, row);
        }
    }
}
