// Grey-level erosion and dilation with a square window along one direction (the window's
// rows or its columns), as ipscope_core::ops::rank: van Herk / Gil-Werman running extrema,
// O(1) comparisons per pixel whatever the radius. A line of n pixels is padded with r
// values of the operation's identity (+inf for the minimum, -inf for the maximum) at each
// end, cut into blocks of k = 2r + 1; `blocks` writes each block's prefix (g) and suffix
// (hs) extrema, `combine` takes the extremum of window i as op(hs[i], g[i + k - 1]). Only
// comparisons, so the values are the CPU's; a NaN takes no part (f32::min/max return the
// other operand), and an all-NaN window gives the identity, as on the CPU. `subtract`
// takes a finite background from an image in place (the top-hat of the nuclei recipe).
//
// Line l, element t is src[l * line_stride + t * step]; g and hs hold padded position j
// of line l at j * lines + l (adjacent lines adjacent in memory).

struct Params {
    n: u32,
    lines: u32,
    step: u32,
    line_stride: u32,
    r: u32,
    // 0: minimum (erosion), 1: maximum (dilation).
    op: u32,
    // Padded line length n + 2r.
    m: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> hs: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn identity() -> f32 {
    if (p.op == 0u) {
        return bitcast<f32>(0x7f800000u);
    }
    return bitcast<f32>(0xff800000u);
}

// The running extremum with v; acc is never NaN. The NaN test goes first: an IEEE
// comparison with NaN is false anyway (lavapipe's, so the parity tests cannot tell it is
// there), but Vulkan lets a device's comparisons ignore NaN.
fn step_op(acc: f32, v: f32) -> f32 {
    if (is_nan(v)) {
        return acc;
    }
    if (p.op == 0u) {
        return select(acc, v, v < acc);
    }
    return select(acc, v, v > acc);
}

// Padded position j of line l.
fn padded(l: u32, j: u32) -> f32 {
    if (j < p.r || j >= p.r + p.n) {
        return identity();
    }
    return src[l * p.line_stride + (j - p.r) * p.step];
}

// One invocation per (line, block): id.x the line, id.y the block.
@compute @workgroup_size(16, 16)
fn blocks(@builtin(global_invocation_id) id: vec3<u32>) {
    let l = id.x;
    let k = 2u * p.r + 1u;
    let j0 = id.y * k;
    if (l >= p.lines || j0 >= p.m) {
        return;
    }
    let j1 = min(j0 + k, p.m);
    var acc = identity();
    for (var j = j0; j < j1; j = j + 1u) {
        acc = step_op(acc, padded(l, j));
        g[j * p.lines + l] = acc;
    }
    acc = identity();
    for (var j = j1; j > j0; j = j - 1u) {
        acc = step_op(acc, padded(l, j - 1u));
        hs[(j - 1u) * p.lines + l] = acc;
    }
}

// One invocation per pixel: id.x the line, id.y the position along it.
@compute @workgroup_size(16, 16)
fn combine(@builtin(global_invocation_id) id: vec3<u32>) {
    let l = id.x;
    let i = id.y;
    if (l >= p.lines || i >= p.n) {
        return;
    }
    let a = hs[i * p.lines + l];
    let b = g[(i + 2u * p.r) * p.lines + l];
    dst[l * p.line_stride + i * p.step] = step_op(a, b);
}

// dst[i] -= src[i] where src[i] is finite, for the first n pixels; invocation i is
// id.x + id.y * p.lines (p.lines: the invocations in one row of groups).
@compute @workgroup_size(256)
fn subtract(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x + id.y * p.lines;
    if (i >= p.n) {
        return;
    }
    let b = src[i];
    if ((bitcast<u32>(b) & 0x7f800000u) != 0x7f800000u) {
        dst[i] = dst[i] - b;
    }
}
