// One step of Li's minimum cross-entropy threshold (ipscope_core::ops::threshold::li):
// the sum of (v - min) and the count of the finite pixels above the host's threshold, and
// the sum of (v - min) of those at or below it, as partial sums per workgroup. The host adds
// the partials in f64 in workgroup order, so the result does not depend on scheduling.
//
// Each invocation sums its pixels (a grid-stride loop, a fixed set per invocation) in f32
// in index order, then the workgroup adds its 256 sums in a fixed tree. The host picks
// `above` so that `v > above` holds exactly for the pixels with `v - min > t` in f64.

struct Params {
    len: u32,
    // Invocations in the whole dispatch (the grid stride).
    stride: u32,
    above: f32,
    min: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
// Per workgroup: sum above, sum at or below (f32 bits), count above.
@group(0) @binding(2) var<storage, read_write> partials: array<u32>;

var<workgroup> s_fore: array<f32, 256>;
var<workgroup> s_back: array<f32, 256>;
var<workgroup> s_count: array<u32, 256>;

fn is_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

@compute @workgroup_size(256)
fn partial_sums(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    var fore = 0.0;
    var back = 0.0;
    var count = 0u;
    for (var i = gid.x; i < p.len; i = i + p.stride) {
        let v = src[i];
        if (is_finite(v)) {
            let d = v - p.min;
            if (v > p.above) {
                fore = fore + d;
                count = count + 1u;
            } else {
                back = back + d;
            }
        }
    }
    s_fore[lid] = fore;
    s_back[lid] = back;
    s_count[lid] = count;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half = half / 2u) {
        if (lid < half) {
            s_fore[lid] = s_fore[lid] + s_fore[lid + half];
            s_back[lid] = s_back[lid] + s_back[lid + half];
            s_count[lid] = s_count[lid] + s_count[lid + half];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        partials[wid.x * 3u] = bitcast<u32>(s_fore[0]);
        partials[wid.x * 3u + 1u] = bitcast<u32>(s_back[0]);
        partials[wid.x * 3u + 2u] = s_count[0];
    }
}
