//! Wall time of [`watershed`] on a 2048² field of 7,225 discs (elevation: the distance to
//! the centre), two seeds each at random elevations within the discs' range, so seeds and
//! flooded pixels interleave in the queue; the two seeds of the first disc tie below every
//! other elevation (so the flood keeps scikit-image's heap until those two are out). Prints
//! a fingerprint of the labels. Best of 3; run the binaries of two builds alternately to compare them.
//!
//! ```sh
//! cargo run --release -p ipscope-core --example watershed_tie
//! ```

use ipscope_core::ops::watershed::watershed;
use ipscope_image::{Image, Labels};
use std::time::Instant;
/// The field, its seeds and the timing.
fn main() {
    let n = 2048usize;
    let mut s = 12345u64;
    let mut rnd = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut elev = Image::new(n, n, 0f32);
    let mut mask = Image::new(n, n, false);
    let mut m = Image::new(n, n, 0u32);
    let mut k = 0u32;
    for cy in (12..n - 12).step_by(24) {
        for cx in (12..n - 12).step_by(24) {
            for y in cy - 10..=cy + 10 {
                for x in cx - 10..=cx + 10 {
                    let d2 = ((y as i64 - cy as i64).pow(2) + (x as i64 - cx as i64).pow(2)) as f32;
                    if d2 <= 100.0 {
                        mask.set(y, x, true);
                        elev.set(y, x, d2.sqrt() + rnd() * 1e-3);
                    }
                }
            }
            k += 1;
            m.set(cy, cx - 3, k);
            elev.set(cy, cx - 3, 3.0 + 6.0 * rnd());
            k += 1;
            m.set(cy, cx + 3, k);
            elev.set(cy, cx + 3, 3.0 + 6.0 * rnd());
        }
    }
    // One component with a tie between its two seeds at the strongest level.
    let (a, b) = ((12, 9), (12, 15));
    elev.set(a.0, a.1, -5.0);
    elev.set(b.0, b.1, -5.0);
    let markers = Labels::new(m, k);
    let mut best = f64::INFINITY;
    let mut fp = 0u64;
    for _ in 0..3 {
        let t = Instant::now();
        let out = watershed(elev.view(), &markers, Some(mask.view()));
        best = best.min(t.elapsed().as_secs_f64());
        fp = out
            .image()
            .as_slice()
            .iter()
            .fold(0xcbf29ce484222325u64, |h, &v| {
                (h ^ v as u64).wrapping_mul(0x100000001b3)
            });
    }
    println!("{k} markers, watershed {:.1} ms, fnv {fp:x}", best * 1e3);
}
