// Separable Gaussian with edge replication (scipy.ndimage.gaussian_filter, mode='nearest').
// Two passes, as ipscope_core::ops::filter::gaussian_blur: down the columns, then along the
// rows; taps are summed centre first, then (x[i-j] + x[i+j]) * w[j] from the outermost tap
// inwards, the CPU order. The CPU accumulates in f64, WGSL has only f32: the parity test
// states the tolerance.

struct Params {
    width: u32,
    height: u32,
    radius: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
// weights[radius + j] for j in -radius..=radius (symmetric).
@group(0) @binding(3) var<storage, read> weights: array<f32>;

@compute @workgroup_size(16, 16)
fn columns(@builtin(global_invocation_id) id: vec3<u32>) {
    let x = id.x;
    let y = id.y;
    if (x >= p.width || y >= p.height) {
        return;
    }
    let w = p.width;
    let r = i32(p.radius);
    let last = i32(p.height) - 1;
    var acc = src[y * w + x] * weights[p.radius];
    for (var j = r; j >= 1; j = j - 1) {
        let up = u32(max(i32(y) - j, 0));
        let down = u32(min(i32(y) + j, last));
        acc = acc + (src[up * w + x] + src[down * w + x]) * weights[u32(r + j)];
    }
    dst[y * w + x] = acc;
}

@compute @workgroup_size(16, 16)
fn rows(@builtin(global_invocation_id) id: vec3<u32>) {
    let x = id.x;
    let y = id.y;
    if (x >= p.width || y >= p.height) {
        return;
    }
    let w = p.width;
    let r = i32(p.radius);
    let last = i32(w) - 1;
    let base = y * w;
    var acc = src[base + x] * weights[p.radius];
    for (var j = r; j >= 1; j = j - 1) {
        let left = u32(max(i32(x) - j, 0));
        let right = u32(min(i32(x) + j, last));
        acc = acc + (src[base + left] + src[base + right]) * weights[u32(r - j)];
    }
    dst[base + x] = acc;
}
