// Histogram of the finite pixels with numpy.histogram's binning, for Otsu's threshold
// (ipscope_core::ops::threshold::histogram). Integer counts with atomics, so the result is
// exact: `find_range` finds the finite min and max as order-preserving u32 keys; `count_bins` bins
// every finite pixel in [first, last] with numpy's estimate-then-correct rule against the
// host's float32 edges, so a division rounded differently by the device still lands in the
// bin the edges define.

struct Params {
    len: u32,
    nbins: u32,
    first: f32,
    last: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
// range: [min key, max key]
@group(0) @binding(2) var<storage, read_write> range_keys: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read_write> counts: array<atomic<u32>>;
@group(0) @binding(4) var<storage, read> edges: array<f32>;

var<workgroup> wg_min: atomic<u32>;
var<workgroup> wg_max: atomic<u32>;

fn is_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

// Monotone map from f32 to u32: negative floats reversed below the positive ones.
fn key(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    if ((b & 0x80000000u) != 0u) {
        return ~b;
    }
    return b | 0x80000000u;
}

@compute @workgroup_size(256)
fn find_range(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    if (lid == 0u) {
        atomicStore(&wg_min, 0xffffffffu);
        atomicStore(&wg_max, 0u);
    }
    workgroupBarrier();
    let i = gid.x + gid.y * groups.x * 256u;
    if (i < p.len) {
        let v = src[i];
        if (is_finite(v)) {
            atomicMin(&wg_min, key(v));
            atomicMax(&wg_max, key(v));
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        let lo = atomicLoad(&wg_min);
        let hi = atomicLoad(&wg_max);
        if (lo <= hi) {
            atomicMin(&range_keys[0], lo);
            atomicMax(&range_keys[1], hi);
        }
    }
}

// Pixels per invocation of `count_bins`: a workgroup bins 256 × 16 consecutive pixels.
const PER_THREAD: u32 = 16u;
// Up to this many bins, a workgroup counts into its own copy first and adds it to `counts`
// once, so the global atomics are few (Otsu's 256 bins would otherwise serialise on them).
const LOCAL_BINS: u32 = 1024u;
var<workgroup> wg_counts: array<atomic<u32>, 1024>;

// The bin of `v`, or `nbins` when it is not counted.
fn bin_of(v: f32) -> u32 {
    let nb = p.nbins;
    if (!is_finite(v) || !(v >= p.first && v <= p.last)) {
        return nb;
    }
    let f = ((v - p.first) / (p.last - p.first)) * f32(nb);
    var idx = min(u32(max(f, 0.0)), nb - 1u);
    if (v < edges[idx] && idx > 0u) {
        idx = idx - 1u;
    }
    if (v >= edges[idx + 1u] && idx != nb - 1u) {
        idx = idx + 1u;
    }
    return idx;
}

@compute @workgroup_size(256)
fn count_bins(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let nb = p.nbins;
    let local = nb <= LOCAL_BINS;
    if (local) {
        for (var b = lid; b < nb; b = b + 256u) {
            atomicStore(&wg_counts[b], 0u);
        }
    }
    workgroupBarrier();
    let base = (wid.x + wid.y * groups.x) * 256u * PER_THREAD;
    for (var k = 0u; k < PER_THREAD; k = k + 1u) {
        let i = base + k * 256u + lid;
        if (i < p.len) {
            let b = bin_of(src[i]);
            if (b < nb) {
                if (local) {
                    atomicAdd(&wg_counts[b], 1u);
                } else {
                    atomicAdd(&counts[b], 1u);
                }
            }
        }
    }
    workgroupBarrier();
    if (local) {
        for (var b = lid; b < nb; b = b + 256u) {
            let c = atomicLoad(&wg_counts[b]);
            if (c != 0u) {
                atomicAdd(&counts[b], c);
            }
        }
    }
}
