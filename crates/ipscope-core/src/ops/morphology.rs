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

/// Fills background regions that cannot reach the image border through 4-connected
/// background pixels (`scipy.ndimage.binary_fill_holes`).
pub fn fill_holes(mask: ImageView<bool>) -> Image<bool> {
    let (w, h) = (mask.width(), mask.height());
    // Flood the background from the border; whatever stays unreached is foreground or a
    // hole. `filled` starts all true and the flood clears what it reaches. Flat indices
    // (u32 on the stack when they fit) keep the inner loop free of 2-D bounds checks.
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
    if m.len() < u32::MAX as usize {
        flood_background::<u32>(m, filled.as_mut_slice(), w, h);
    } else {
        flood_background::<usize>(m, filled.as_mut_slice(), w, h);
    }
    filled
}

/// A stack index type for [`flood_background`].
trait Index: Copy {
    fn from_usize(i: usize) -> Self;
    fn to_usize(self) -> usize;
}
impl Index for u32 {
    #[inline(always)]
    fn from_usize(i: usize) -> Self {
        i as u32
    }
    #[inline(always)]
    fn to_usize(self) -> usize {
        self as usize
    }
}
impl Index for usize {
    #[inline(always)]
    fn from_usize(i: usize) -> Self {
        i
    }
    #[inline(always)]
    fn to_usize(self) -> usize {
        self
    }
}

/// Clears `filled` at every background pixel of `mask` 4-connected to the border.
fn flood_background<I: Index>(mask: &[bool], filled: &mut [bool], w: usize, h: usize) {
    let mut stack: Vec<I> = Vec::new();
    let seed = |i: usize, filled: &mut [bool], stack: &mut Vec<I>| {
        if !mask[i] && filled[i] {
            filled[i] = false;
            stack.push(I::from_usize(i));
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
        let i = i.to_usize();
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
