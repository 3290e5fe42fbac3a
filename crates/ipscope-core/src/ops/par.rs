//! Parallelism inside one image: bands of whole rows of an output image handed to the
//! current rayon pool.
//!
//! A field runs on one worker of the plate's pool; when the pool has idle workers (the tail
//! of a plate, fewer fields than threads, or `ipscope segment` of one image) the row-wise
//! passes of a kernel split their output into bands that the idle workers steal. Every
//! output value is still computed by one call with the same arithmetic as the whole-image
//! loop, so results do not depend on the number of threads or on the split. With one thread
//! (or a small image) the kernel runs as one band on the calling thread.

use rayon::prelude::*;

/// Rows below which a band is not split further: a band's work must outweigh a task's cost.
const MIN_BAND_ROWS: usize = 32;

/// The number of rows per band for an image of `height` rows on the current pool: about
/// four bands per thread (so a stolen band balances the load), at least [`MIN_BAND_ROWS`].
fn band_rows(height: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    if threads == 1 {
        return height.max(1);
    }
    height.div_ceil(threads * 4).max(MIN_BAND_ROWS)
}

/// Calls `f(scratch, first_row, band)` for consecutive bands of whole rows of `out` (an
/// image `width` values wide), each band exactly once, in parallel when the current rayon
/// pool has more than one thread. `init` makes the scratch buffers of one task (one per band
/// at most). `f` must compute each row from `first_row` and read-only inputs only.
pub fn for_each_row_band<T, S>(
    out: &mut [T],
    width: usize,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize, &mut [T]) + Sync + Send,
) where
    T: Send,
{
    for_each_aligned_row_band(out, width, 1, init, f)
}

/// [`for_each_row_band`] with every band but the last a multiple of `align` rows, for
/// passes that work in blocks of rows (each band then starts a block).
pub fn for_each_aligned_row_band<T, S>(
    out: &mut [T],
    width: usize,
    align: usize,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize, &mut [T]) + Sync + Send,
) where
    T: Send,
{
    if width == 0 || out.is_empty() {
        return;
    }
    let height = out.len() / width;
    let align = align.max(1);
    let rows = band_rows(height).div_ceil(align) * align;
    if rows >= height {
        f(&mut init(), 0, out);
        return;
    }
    out.par_chunks_mut(rows * width)
        .enumerate()
        .for_each_init(init, |scratch, (b, band)| f(scratch, b * rows, band));
}

/// An image shared by parallel tasks that each touch a disjoint set of its pixels (one
/// object's or one part's): the tasks read and write through it without a lock, and the
/// caller proves the disjointness at each access.
pub(crate) struct DisjointPixels<'a, T> {
    ptr: *mut T,
    len: usize,
    _out: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: the tasks that share it access disjoint pixels (the contract of `get` and `set`);
// `T: Send` so values may be written from another thread.
unsafe impl<T: Send> Sync for DisjointPixels<'_, T> {}

impl<'a, T: Copy> DisjointPixels<'a, T> {
    /// Shares `out` for the lifetime of the borrow.
    pub(crate) fn new(out: &'a mut [T]) -> Self {
        DisjointPixels {
            ptr: out.as_mut_ptr(),
            len: out.len(),
            _out: std::marker::PhantomData,
        }
    }

    /// # Safety
    /// No other thread may write pixel `i` concurrently.
    #[inline(always)]
    pub(crate) unsafe fn get(&self, i: usize) -> T {
        assert!(i < self.len);
        // SAFETY: in bounds (checked); no concurrent writer (the caller's contract).
        unsafe { *self.ptr.add(i) }
    }

    /// # Safety
    /// No other thread may read or write pixel `i` concurrently.
    #[inline(always)]
    pub(crate) unsafe fn set(&self, i: usize, v: T) {
        assert!(i < self.len);
        // SAFETY: in bounds (checked); exclusive access (the caller's contract).
        unsafe { *self.ptr.add(i) = v }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(width: usize, height: usize) -> Vec<u64> {
        let mut out = vec![0u64; width * height];
        for_each_row_band(
            &mut out,
            width,
            || 0u32,
            |calls, first, band| {
                *calls += 1;
                for (k, row) in band.chunks_mut(width).enumerate() {
                    for (c, v) in row.iter_mut().enumerate() {
                        *v = ((first + k) * 1000 + c) as u64;
                    }
                }
            },
        );
        out
    }

    #[test]
    fn every_row_is_written_once_with_its_own_index_for_any_pool() {
        let want: Vec<u64> = (0..300)
            .flat_map(|r| (0..7).map(move |c| (r * 1000 + c) as u64))
            .collect();
        for threads in [1, 2, 3, 8] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            assert_eq!(pool.install(|| filled(7, 300)), want, "{threads} threads");
        }
        assert!(filled(0, 0).is_empty());
        // Aligned bands start at multiples of the alignment.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let mut firsts = pool.install(|| {
            let firsts = std::sync::Mutex::new(Vec::new());
            let mut out = vec![0u8; 5 * 1000];
            for_each_aligned_row_band(
                &mut out,
                5,
                7,
                || (),
                |_, first, band| {
                    band.fill(1);
                    firsts.lock().unwrap().push((first, band.len() / 5));
                },
            );
            assert!(out.iter().all(|&v| v == 1));
            firsts.into_inner().unwrap()
        });
        firsts.sort_unstable();
        assert!(firsts.len() > 1);
        assert!(firsts.iter().all(|&(f, _)| f % 7 == 0));
        assert_eq!(firsts.iter().map(|&(_, n)| n).sum::<usize>(), 1000);
        assert_eq!(filled(3, 1), vec![0, 1, 2]);
    }
}
