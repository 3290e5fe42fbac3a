//! Synthetic fields shared by the criterion benches (`mod common;` in each bench file).

use ipscope_core::ops::filter::gaussian_blur;
use ipscope_image::Image;

/// A uint16 DNA-stain field of `size`² with domed elliptical nuclei on a noisy background.
pub fn field(size: usize) -> Image<u16> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ size as u64;
    let mut rnd = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut img = Image::new(size, size, 0.0f32);
    let n = size * size / 3100;
    let mut placed: Vec<(f64, f64, f64)> = Vec::with_capacity(n);
    let mut tries = 0;
    while placed.len() < n && tries < 50 * n {
        tries += 1;
        let (y, x) = (rnd() * size as f64, rnd() * size as f64);
        let (a, b) = (7.0 + 3.0 * rnd(), 6.5 + 2.5 * rnd());
        let mut group = vec![(y, x, a, b)];
        if rnd() < 0.2 {
            let ang = rnd() * std::f64::consts::TAU;
            let d = 0.95 * (a + b);
            group.push((y + d * ang.sin(), x + d * ang.cos(), a, b));
        }
        for (y, x, a, b) in group {
            let r = (a + b) / 2.0;
            let clear = placed.iter().all(|&(py, px, pr)| {
                (py - y).powi(2) + (px - x).powi(2) >= (0.8 * (r + pr)).powi(2)
            });
            if !clear || y < 4.0 || x < 4.0 || y >= size as f64 - 4.0 || x >= size as f64 - 4.0 {
                continue;
            }
            placed.push((y, x, r));
            let (s, c) = (rnd() * std::f64::consts::PI).sin_cos();
            let amp = 2500.0 + 6500.0 * rnd();
            let ri = a.ceil() as usize + 1;
            let (y0, y1) = (
                (y as usize).saturating_sub(ri),
                (y as usize + ri + 1).min(size),
            );
            let (x0, x1) = (
                (x as usize).saturating_sub(ri),
                (x as usize + ri + 1).min(size),
            );
            for yy in y0..y1 {
                for xx in x0..x1 {
                    let (dy, dx) = (yy as f64 - y, xx as f64 - x);
                    let u = (dx * c + dy * s) / a;
                    let v = (-dx * s + dy * c) / b;
                    let rho2 = u * u + v * v;
                    if rho2 < 1.0 {
                        let p = (amp * (1.0 - rho2).powf(0.25)) as f32;
                        let o = img.get(yy, xx);
                        img.set(yy, xx, o.max(p));
                    }
                }
            }
        }
    }
    let img = gaussian_blur(img.view(), 1.2);
    img.map(|v| {
        let noise = (rnd() + rnd() + rnd() - 1.5) * 40.0;
        (f64::from(v) + 400.0 + noise).clamp(0.0, 65535.0) as u16
    })
}
