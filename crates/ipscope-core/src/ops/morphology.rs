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
    // Flood the background from the border; whatever stays unreached is foreground or a hole.
    let mut outside = Image::new(w, h, false);
    let mut stack: Vec<(usize, usize)> = Vec::new();
    let seed = |r: usize, c: usize, outside: &mut Image<bool>, stack: &mut Vec<_>| {
        if !mask.get(r, c) && !outside.get(r, c) {
            outside.set(r, c, true);
            stack.push((r, c));
        }
    };
    for c in 0..w {
        seed(0, c, &mut outside, &mut stack);
        if h > 1 {
            seed(h - 1, c, &mut outside, &mut stack);
        }
    }
    for r in 0..h {
        seed(r, 0, &mut outside, &mut stack);
        if w > 1 {
            seed(r, w - 1, &mut outside, &mut stack);
        }
    }
    while let Some((r, c)) = stack.pop() {
        if r > 0 {
            seed(r - 1, c, &mut outside, &mut stack);
        }
        if c > 0 {
            seed(r, c - 1, &mut outside, &mut stack);
        }
        if c + 1 < w {
            seed(r, c + 1, &mut outside, &mut stack);
        }
        if r + 1 < h {
            seed(r + 1, c, &mut outside, &mut stack);
        }
    }
    outside.map(|o| !o)
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
