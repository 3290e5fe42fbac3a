//! Binary morphology.
//!
//! [`fill_holes`] reproduces `scipy.ndimage.binary_fill_holes` with its default structure
//! (the 4-connected cross): a hole is a background component that is not 4-connected to the
//! image border. [`binary_erosion`], [`binary_dilation`] and [`binary_opening`] reproduce
//! `scipy.ndimage.binary_erosion / binary_dilation / binary_opening` with the default cross
//! structure, one iteration and `border_value=0` (pixels outside the image are background).
//!
//! All run in O(pixels).

use ipscope_image::{Image, ImageView};

use super::label::find;
use super::scan::next_other_bool as next_other;

/// Fills background regions that cannot reach the image border through 4-connected
/// background pixels (`scipy.ndimage.binary_fill_holes`).
pub fn fill_holes(mask: ImageView<bool>) -> Image<bool> {
    let (w, h) = (mask.width(), mask.height());
    // Flood the background from the border; whatever stays unreached is foreground or a
    // hole. `filled` starts all true and the flood clears what it reaches, a horizontal span
    // at a time.
    let mut filled = Image::new(w, h, true);
    if w == 0 || h == 0 {
        return filled;
    }
    let owned;
    let m: &[bool] = match mask.as_contiguous() {
        Some(m) => m,
        None => {
            owned = mask.to_image();
            owned.as_slice()
        }
    };
    clear_border_background(m, filled.as_mut_slice(), w, h);
    filled
}

/// Clears `filled` at every background pixel of `mask` 4-connected to the border, by runs:
/// each row's background runs are joined (union-find) with the runs of the row above that
/// overlap them, a set remembers whether one of its runs touches the border, and the runs of
/// such sets are cleared at the end. Each row is read once and written once.
fn clear_border_background(mask: &[bool], filled: &mut [bool], w: usize, h: usize) {
    // A run of background: row, start, end; its set is its index.
    let mut runs: Vec<(u32, u32, u32)> = Vec::new();
    let mut parent: Vec<u32> = Vec::new();
    let mut border: Vec<bool> = Vec::new();
    let mut prev = 0..0;
    for r in 0..h {
        let row = &mask[r * w..(r + 1) * w];
        let first = runs.len();
        let mut j = prev.start;
        let mut c = 0;
        while c < w {
            let s = next_other(row, c, true);
            if s >= w {
                break;
            }
            let e = next_other(row, s, false);
            c = e;
            let id = runs.len() as u32;
            parent.push(id);
            border.push(r == 0 || r + 1 == h || s == 0 || e == w);
            // Runs above share a column with `s..e` (4-connectivity).
            while j < prev.end && (runs[j].2 as usize) <= s {
                j += 1;
            }
            let mut k = j;
            while k < prev.end && (runs[k].1 as usize) < e {
                let (a, b) = (find(&mut parent, id), find(&mut parent, k as u32));
                if a != b {
                    parent[b as usize] = a;
                    border[a as usize] |= border[b as usize];
                }
                k += 1;
            }
            runs.push((r as u32, s as u32, e as u32));
        }
        prev = first..runs.len();
    }
    for (i, &(r, s, e)) in runs.iter().enumerate() {
        let root = find(&mut parent, i as u32);
        if border[root as usize] {
            let row = r as usize * w;
            filled[row + s as usize..row + e as usize].fill(false);
        }
    }
}

/// Clears `filled` at every background pixel of `mask` 4-connected to the border, as a
/// scan-line flood (the previous method, kept as a reference for the tests): each step clears a whole horizontal span of background and queues the
/// rows above and below over its extent, so the work is a few sequential passes over each
/// row instead of a stack push per pixel.
#[cfg(test)]
fn flood_background_spans(mask: &[bool], filled: &mut [bool], w: usize, h: usize) {
    // (row, first column, one past the last column) to scan for unreached background.
    let mut stack: Vec<(usize, usize, usize)> = Vec::with_capacity(2 * h + 2);
    stack.push((0, 0, w));
    stack.push((h - 1, 0, w));
    for r in 1..h.saturating_sub(1) {
        stack.push((r, 0, 1));
        stack.push((r, w - 1, w));
    }
    let open = |i: usize, filled: &[bool]| !mask[i] && filled[i];
    while let Some((r, x0, x1)) = stack.pop() {
        let row = r * w;
        let mut x = x0;
        while x < x1 {
            if !open(row + x, filled) {
                x += 1;
                continue;
            }
            let mut l = x;
            while l > 0 && open(row + l - 1, filled) {
                l -= 1;
            }
            let mut e = x + 1;
            while e < w && open(row + e, filled) {
                e += 1;
            }
            filled[row + l..row + e].fill(false);
            if r > 0 {
                stack.push((r - 1, l, e));
            }
            if r + 1 < h {
                stack.push((r + 1, l, e));
            }
            x = e;
        }
    }
}

/// The pixel-by-pixel reference of [`flood_background_spans`].
#[cfg(test)]
fn flood_background_pixels(mask: &[bool], filled: &mut [bool], w: usize, h: usize) {
    let mut stack: Vec<usize> = Vec::new();
    let seed = |i: usize, filled: &mut [bool], stack: &mut Vec<usize>| {
        if !mask[i] && filled[i] {
            filled[i] = false;
            stack.push(i);
        }
    };
    for c in 0..w {
        seed(c, filled, &mut stack);
        seed((h - 1) * w + c, filled, &mut stack);
    }
    for r in 0..h {
        seed(r * w, filled, &mut stack);
        seed(r * w + w - 1, filled, &mut stack);
    }
    while let Some(i) = stack.pop() {
        let c = i % w;
        if i >= w {
            seed(i - w, filled, &mut stack);
        }
        if c > 0 {
            seed(i - 1, filled, &mut stack);
        }
        if c + 1 < w {
            seed(i + 1, filled, &mut stack);
        }
        if i + w < w * h {
            seed(i + w, filled, &mut stack);
        }
    }
}

/// Erosion by the 4-connected cross; pixels outside the image count as background.
pub fn binary_erosion(mask: ImageView<bool>) -> Image<bool> {
    let (w, h) = (mask.width(), mask.height());
    Image::from_fn(w, h, |r, c| {
        mask.get(r, c)
            && r > 0
            && c > 0
            && r + 1 < h
            && c + 1 < w
            && mask.get(r - 1, c)
            && mask.get(r + 1, c)
            && mask.get(r, c - 1)
            && mask.get(r, c + 1)
    })
}

/// Dilation by the 4-connected cross.
pub fn binary_dilation(mask: ImageView<bool>) -> Image<bool> {
    let (w, h) = (mask.width(), mask.height());
    Image::from_fn(w, h, |r, c| {
        mask.get(r, c)
            || (r > 0 && mask.get(r - 1, c))
            || (r + 1 < h && mask.get(r + 1, c))
            || (c > 0 && mask.get(r, c - 1))
            || (c + 1 < w && mask.get(r, c + 1))
    })
}

/// Opening (erosion then dilation) by the 4-connected cross.
pub fn binary_opening(mask: ImageView<bool>) -> Image<bool> {
    let eroded = binary_erosion(mask);
    binary_dilation(eroded.view())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(rows: &[&str]) -> Image<bool> {
        let w = rows.first().map_or(0, |r| r.len());
        Image::from_fn(w, rows.len(), |r, c| rows[r].as_bytes()[c] == b'#')
    }

    #[test]
    fn fills_enclosed_holes_only() {
        let m = parse(&[
            "#####...", //
            "#..##.#.", //
            "#####.#.", //
            "......#.", //
            ".###....", //
            ".#.#....", //
        ]);
        let f = fill_holes(m.view());
        assert_eq!(
            f,
            parse(&[
                "#####...", //
                "#####.#.", //
                "#####.#.", //
                "......#.", //
                ".###....", //
                ".#.#....", //
            ])
        );
    }

    #[test]
    fn span_flood_equals_the_pixel_flood() {
        let mut state = 77u64;
        for (k, fg) in [0u64, 1, 3, 5, 6, 7, 9, 10].into_iter().enumerate() {
            for (w, h) in [(1, 9), (9, 1), (2, 2), (37 + k, 29), (64, 3), (130, 41)] {
                let m: Vec<bool> = (0..w * h)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        (state >> 33) % 10 < fg
                    })
                    .collect();
                let mut spans = vec![true; w * h];
                let mut pixels = vec![true; w * h];
                let mut runs = vec![true; w * h];
                flood_background_spans(&m, &mut spans, w, h);
                flood_background_pixels(&m, &mut pixels, w, h);
                clear_border_background(&m, &mut runs, w, h);
                assert_eq!(spans, pixels, "{w}x{h}, {fg}/10 foreground");
                assert_eq!(runs, pixels, "runs {w}x{h}, {fg}/10 foreground");
            }
        }
    }

    #[test]
    fn diagonal_gaps_do_not_leak_background() {
        // The centre only touches the outside diagonally: 4-connected background, so a hole.
        let m = parse(&[".#.", "#.#", ".#."]);
        assert_eq!(fill_holes(m.view()), parse(&[".#.", "###", ".#."]));
    }

    #[test]
    fn degenerate_sizes() {
        let e = Image::new(0, 0, false);
        assert_eq!(fill_holes(e.view()).len(), 0);
        let one = Image::new(1, 1, false);
        assert!(!fill_holes(one.view()).get(0, 0));
        let line = parse(&["#.#"]);
        assert_eq!(fill_holes(line.view()), line);
    }

    #[test]
    fn opening_removes_isolated_pixels_and_thin_lines() {
        let m = parse(&[
            "#.......", //
            "...###..", //
            "...###..", //
            "...###..", //
            "#######.", //
        ]);
        let o = binary_opening(m.view());
        assert!(!o.get(0, 0));
        assert!(o.get(2, 4));
        assert!(!o.get(4, 0));
    }
}
